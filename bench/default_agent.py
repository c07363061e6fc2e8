"""A peer of `make bench-turns`: a voice agent on livekit-agents' own defaults.

The session is given only STT, LLM and TTS; livekit supplies the rest: its bundled VAD
(``inference.VAD``, 0.25 s of silence) and its bundled audio end-of-turn model
(``inference.TurnDetector``, turn-detector-v1-mini, run locally by the worker).

    LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... AGENT_NAME=defaults \\
    OPENAI_BASE_URL=... OPENAI_API_KEY=... python bench/default_agent.py start
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
from livekit.plugins import openai

# the benchmark gives each worker its own health port, and may raise livekit's CPU-based load
# threshold (0.7 by default in `start`) so that every room of a turn-taking run is served
threshold = (
    {"load_threshold": float(os.environ["LOAD_THRESHOLD"])}
    if "LOAD_THRESHOLD" in os.environ
    else {}
)
server = AgentServer(**threshold, port=int(os.environ.get("AGENT_HTTP_PORT", "8081")))


@server.rtc_session(agent_name=os.environ.get("AGENT_NAME", ""))
async def entrypoint(ctx: JobContext) -> None:
    session: AgentSession[None] = AgentSession(
        stt=openai.STT(), llm=openai.LLM(model="gpt-4o-mini"), tts=openai.TTS()
    )
    await session.start(
        agent=Agent(instructions="You are a friendly voice assistant. Keep answers short."),
        room=ctx.room,
    )
    await session.generate_reply(instructions="Greet the user and offer your help.")


if __name__ == "__main__":
    cli.run_app(server)
