"""A LiveKit voice agent that remembers its users, on a per-process resource pool.

python agent.py console --text   talk to it in the terminal, no LiveKit server
python agent.py dev | start      run it as a LiveKit worker
"""

from __future__ import annotations

import asyncio
import logging
import sys

from dotenv import find_dotenv, load_dotenv
from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    JobProcess,
    RunContext,
    cli,
    function_tool,
    llm,
)
from livekit.agents import vad as vad_module
from livekit.plugins import openai as openai_plugin
from livekit.plugins import silero

from pool import ConfigError, ConnectionPool, Settings, get_pool, install_log_redaction
from tools.pool_tools import cleanup_report, stats_report
from tools.session import SessionData

logger = logging.getLogger("agent")

INSTRUCTIONS = """You are a friendly voice assistant who remembers the people you talk to.
Keep answers short and speakable: no lists, markdown, emojis or symbols.
When asked how your connections or resources are doing, call getConnectionPoolStats and
summarise it in a sentence or two. When asked to clean up or reset connections, call
cleanupConnectionPool."""


class Assistant(Agent):
    def __init__(
        self, *, instructions: str = INSTRUCTIONS, chat_ctx: llm.ChatContext | None = None
    ) -> None:
        super().__init__(instructions=instructions, chat_ctx=chat_ctx)

    @function_tool(name="getConnectionPoolStats")
    async def get_connection_pool_stats(self, context: RunContext[SessionData]) -> str:
        """Report the health of the agent's connections to its AI provider, memory store and
        HTTP services: per resource its health, requests, failures, p95 latency and how many
        connections were opened versus reused."""
        return stats_report(context.userdata.pool)

    @function_tool(name="cleanupConnectionPool")
    async def cleanup_connection_pool(self, context: RunContext[SessionData]) -> str:
        """Close idle or broken connections and reset any tripped circuit breaker, so the next
        request starts fresh. Use when the user asks to clean up or reset connections."""
        return await cleanup_report(context.userdata.pool)


async def build_session(
    pool: ConnectionPool, userdata: SessionData, vad: vad_module.VAD | None
) -> AgentSession[SessionData]:
    """An AgentSession whose STT, LLM and TTS all run on the pool's OpenAI client.

    Without a VAD the session is text only: the OpenAI STT plugin cannot stream
    without one to cut the audio into utterances.
    """
    settings = pool.settings
    client = await pool.openai()
    model = openai_plugin.LLM(client=client, model=settings.llm_model)
    if vad is None:
        return AgentSession[SessionData](
            llm=model, userdata=userdata, turn_handling={"turn_detection": "manual"}
        )
    return AgentSession[SessionData](
        stt=openai_plugin.STT(client=client, model=settings.stt_model, use_realtime=False),
        llm=model,
        tts=openai_plugin.TTS(client=client, model=settings.tts_model, voice=settings.tts_voice),
        vad=vad,
        # the multilingual turn detector downloads its model at run time; VAD needs nothing
        turn_handling={"turn_detection": "vad"},
        userdata=userdata,
    )


def prewarm(proc: JobProcess) -> None:
    """Runs once per job process, before its event loop exists: no network here."""
    proc.userdata["settings"] = Settings.from_env()
    proc.userdata["vad"] = silero.VAD.load()


server = AgentServer(setup_fnc=prewarm)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    settings: Settings = ctx.proc.userdata.get("settings") or Settings.from_env()
    pool = get_pool(settings)
    # the first user turn should find every connection open: warm while the room connects
    warming = asyncio.create_task(pool.warm(), name="pool-warm")

    async def close_pool() -> None:
        warming.cancel()
        await asyncio.gather(warming, return_exceptions=True)
        await pool.aclose()

    ctx.add_shutdown_callback(close_pool)

    await ctx.connect()
    user_id = settings.user_id if ctx.is_fake_job() else (await ctx.wait_for_participant()).identity

    userdata = SessionData(pool=pool, settings=settings, user_id=user_id)
    session = await build_session(pool, userdata, ctx.proc.userdata.get("vad"))
    await session.start(agent=Assistant(), room=ctx.room)


def main(argv: list[str]) -> int:
    # the .env of the directory the agent is started from
    load_dotenv(find_dotenv(usecwd=True))
    install_log_redaction()
    command = next((arg for arg in argv[1:] if not arg.startswith("-")), "")
    if command in {"console", "dev", "start", "connect"}:
        try:
            Settings.from_env().require_openai()
        except ConfigError as exc:
            print(f"agent.py: {exc}", file=sys.stderr)
            return 2
    cli.run_app(server)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
