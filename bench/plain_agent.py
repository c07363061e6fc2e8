"""The peer of `make bench-load`: a voice agent written as livekit's starter writes it.

The plugins own their clients, nothing is pooled, remembered or cached. Turn detection is
VAD, as in this project (the starter's multilingual model downloads weights at run time).

    LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... AGENT_NAME=plain \\
    OPENAI_BASE_URL=... OPENAI_API_KEY=... python bench/plain_agent.py start
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli
from livekit.plugins import openai, silero


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


# the benchmark gives each worker its own health port, and may raise livekit's CPU-based load
# threshold (0.7 by default in `start`) so that every room of a turn-taking run is served
threshold = (
    {"load_threshold": float(os.environ["LOAD_THRESHOLD"])}
    if "LOAD_THRESHOLD" in os.environ
    else {}
)
server = AgentServer(
    **threshold, setup_fnc=prewarm, port=int(os.environ.get("AGENT_HTTP_PORT", "8081"))
)


@server.rtc_session(agent_name=os.environ.get("AGENT_NAME", ""))
async def entrypoint(ctx: JobContext) -> None:
    session: AgentSession[None] = AgentSession(
        stt=openai.STT(),
        llm=openai.LLM(model="gpt-4o-mini"),
        tts=openai.TTS(),
        vad=ctx.proc.userdata["vad"],
        turn_handling={"turn_detection": "vad", "interruption": {"mode": "vad"}},
    )
    await session.start(
        agent=Agent(instructions="You are a friendly voice assistant. Keep answers short."),
        room=ctx.room,
    )
    await session.generate_reply(instructions="Greet the user and offer your help.")


if __name__ == "__main__":
    cli.run_app(server)
