"""A LiveKit voice agent that remembers its users, on a per-process resource pool.

python agent.py console --text   talk to it in the terminal, no LiveKit server
python agent.py dev | start      run it as a LiveKit worker
python agent.py memory outbox    memory writes waiting or set aside; `memory replay` retries
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any, Literal

from dotenv import find_dotenv, load_dotenv
from livekit import rtc
from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    APIConnectOptions,
    FlushSentinel,
    JobContext,
    JobProcess,
    RunContext,
    cli,
    function_tool,
    llm,
)
from livekit.agents import vad as vad_module
from livekit.agents.voice import ModelSettings, room_io
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.plugins import silero

from pool import ConfigError, ConnectionPool, Settings, get_pool, install_log_redaction, redact
from tools import memory_cli
from tools.acknowledge import acknowledged
from tools.background import PostTurnWorker, follow_turns
from tools.capacity import conversation_load
from tools.console_view import quiet_unused_cloud_warnings, show_agent_words
from tools.google_speech import import_plugin, uses_google
from tools.greeting import GENERIC_GREETING, forget_greeting, greeting_for
from tools.memory import Memory, MemoryService
from tools.memory_tools import (
    forget_memory,
    memory_block,
    recall_memory,
    recall_within_budget,
    save_memory,
)
from tools.phrases import PHRASES, Phrases, speak_up_on_errors, voice_directory
from tools.pool_tools import cleanup_report, stats_report
from tools.providers import build_llm, build_stt, build_tts, provider_specs
from tools.session import GracefulSession, SessionData
from tools.stores import memory_spec, open_memory_service

logger = logging.getLogger("agent")
ONE_MOMENT = PHRASES["one_moment"]
# job processes import this module without running main(): redact and quiet there too
install_log_redaction()
quiet_unused_cloud_warnings()

INSTRUCTIONS = """You are a friendly voice assistant who remembers the people you talk to.
Keep answers short and speakable: no lists, markdown, emojis or symbols.
When the user tells you something worth remembering about themselves (their name, what they
like, what they are working on), save it with saveMemory. Use recallMemory when you need
something you may have been told before, and forgetMemory when they ask you to forget.
When asked how your connections or resources are doing, call getConnectionPoolStats and
summarise it in a sentence or two. When asked to clean up or reset connections, call
cleanupConnectionPool."""

CategoryName = Literal["FACT", "PREFERENCE", "CONTEXT"]


class Assistant(Agent):
    def __init__(
        self,
        *,
        memories: Sequence[Memory] = (),
        instructions: str = INSTRUCTIONS,
        ack_after_s: float | None = None,
        phrases: Phrases | None = None,
    ) -> None:
        """``ack_after_s``: say "One moment." when the model has said nothing by then.
        ``phrases``: pre-rendered audio for the sentences the agent says in trouble."""
        self.memories = list(memories)
        self.ack_after_s = ack_after_s
        self.phrases = phrases
        chat_ctx = llm.ChatContext()
        if memories:
            chat_ctx.add_message(role="system", content=memory_block(memories))
        super().__init__(instructions=instructions, chat_ctx=chat_ctx)

    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterator[llm.ChatChunk | str | FlushSentinel]:
        reply = Agent.default.llm_node(self, chat_ctx, tools, model_settings)
        if self.ack_after_s is None:
            async for chunk in reply:
                yield chunk
            return
        async for chunk in acknowledged(reply, after_s=self.ack_after_s, text=ONE_MOMENT):
            yield chunk

    async def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterator[rtc.AudioFrame]:
        """The acknowledgement plays from its pre-rendered audio: at once, TTS or not."""
        words = aiter(text)
        first = await anext(words, None)
        if first is None:
            return
        cached = self.phrases.frames("one_moment") if self.phrases else None
        if cached is not None and first == ONE_MOMENT:
            rest = await anext(words, None)
            if rest is None:
                for frame in cached:
                    yield frame
                return
            words = _prepend([first, rest], words)
        else:
            words = _prepend([first], words)
        async for frame in Agent.default.tts_node(self, words, model_settings):
            yield frame

    async def add_memories(self, memories: Sequence[Memory]) -> None:
        """Memories that arrived after the session started join the conversation."""
        self.memories.extend(memories)
        if memories:
            chat_ctx = self.chat_ctx.copy()
            chat_ctx.add_message(role="system", content=memory_block(memories))
            await self.update_chat_ctx(chat_ctx)

    @function_tool(name="saveMemory")
    async def save_memory(
        self, context: RunContext[SessionData], category: CategoryName, key: str, value: str
    ) -> str:
        """Remember something about the user for future conversations. Saving the same
        category and key again replaces the old value.

        Args:
            category: FACT for facts about the user (name, job, family), PREFERENCE for likes
                and dislikes, CONTEXT for what they are currently doing or planning.
            key: A short lowercase name for the memory, like "name" or "favorite_food".
            value: What to remember, in a few words.
        """
        data = context.userdata
        return await save_memory(_memory(data), data.user_id, category, key, value)

    @function_tool(name="recallMemory")
    async def recall_memory(
        self,
        context: RunContext[SessionData],
        category: CategoryName | None = None,
        key: str | None = None,
    ) -> str:
        """Look up what you remember about the user: one memory by key, every memory of a
        category, or everything when neither is given.

        Args:
            category: Only memories of this category (FACT, PREFERENCE or CONTEXT).
            key: Only the memory with this key, like "name".
        """
        data = context.userdata
        return await recall_memory(_memory(data), data.user_id, category, key)

    @function_tool(name="forgetMemory")
    async def forget_memory(
        self, context: RunContext[SessionData], category: CategoryName, key: str
    ) -> str:
        """Forget one thing you remembered about the user, when they ask you to.

        Args:
            category: The memory's category (FACT, PREFERENCE or CONTEXT).
            key: The memory's key, like "name".
        """
        data = context.userdata
        return await forget_memory(_memory(data), data.user_id, category, key)

    @function_tool(name="getConnectionPoolStats")
    async def get_connection_pool_stats(self, context: RunContext[SessionData]) -> str:
        """Report the health of the agent's connections to its AI provider, memory store and
        HTTP services: per resource its health, requests, failures, p95 latency and how many
        connections were opened versus reused."""
        data = context.userdata
        outbox = data.memory.outbox if data.memory is not None else None
        return await stats_report(data.pool, outbox)

    @function_tool(name="cleanupConnectionPool")
    async def cleanup_connection_pool(self, context: RunContext[SessionData]) -> str:
        """Close idle or broken connections and reset any tripped circuit breaker, so the next
        request starts fresh. Use when the user asks to clean up or reset connections."""
        return await cleanup_report(context.userdata.pool)


async def _prepend(head: list[str], tail: AsyncIterator[str]) -> AsyncIterator[str]:
    for item in head:
        yield item
    async for item in tail:
        yield item


def _memory(data: SessionData) -> MemoryService:
    if data.memory is None:
        raise RuntimeError("This session was started without a memory service.")
    return data.memory


async def build_session(
    pool: ConnectionPool, userdata: SessionData, vad: vad_module.VAD | None
) -> AgentSession[SessionData]:
    """An AgentSession whose STT, LLM and TTS all run on the pool's clients, each a chain of
    providers that fails over in order.

    Without a VAD the session is text only: the OpenAI STT plugin cannot stream
    without one to cut the audio into utterances.
    """
    model = await build_llm(pool)
    drain_s = pool.settings.turn_drain_s
    if vad is None:
        return GracefulSession(
            drain_s=drain_s,
            llm=model,
            userdata=userdata,
            turn_handling={"turn_detection": "manual", "interruption": {"mode": "vad"}},
            conn_options=VOICE_CONN_OPTIONS,
        )
    return GracefulSession(
        drain_s=drain_s,
        conn_options=VOICE_CONN_OPTIONS,
        stt=await build_stt(pool, vad),
        llm=model,
        tts=await build_tts(pool),
        vad=vad,
        # the multilingual turn detector downloads its model at run time, and adaptive
        # interruption needs LiveKit Cloud: VAD needs nothing beyond this process
        turn_handling={"turn_detection": "vad", "interruption": {"mode": "vad"}},
        userdata=userdata,
    )


async def prepare_assistant(
    memory: MemoryService, user_id: str, *, phrases: Phrases | None = None
) -> Assistant:
    """An Assistant that knows the user's memories, if the store answers within budget;
    otherwise it starts without them and adds them when they arrive."""
    settings = memory.pool.settings
    budget_s = settings.memory_recall_budget_ms / 1000
    memories, late = await recall_within_budget(memory, user_id, budget_s)
    assistant = Assistant(
        memories=memories or (), ack_after_s=settings.ack_after_s, phrases=phrases
    )
    if memories is None:

        def arrive(task: asyncio.Task[list[Memory]]) -> None:
            if not task.cancelled() and task.exception() is None:
                pending = asyncio.create_task(assistant.add_memories(task.result()))
                _background.add(pending)
                pending.add_done_callback(_background.discard)

        late.add_done_callback(arrive)
    return assistant


# late memories are added by a task nobody awaits; keep a reference so it is not collected
_background: set[asyncio.Task[None]] = set()

# a voice turn cannot wait out livekit's default retries (3, 2 s apart) before the person
# hears anything: one quick retry, then the agent says what is wrong (tools.phrases); and
# a long outage must not end the session (livekit closes it after 3 failures in a row)
_QUICK = APIConnectOptions(max_retry=1, retry_interval=0.3, timeout=10.0)
VOICE_CONN_OPTIONS = SessionConnectOptions(
    stt_conn_options=_QUICK, tts_conn_options=_QUICK, max_unrecoverable_errors=1_000_000
)


def prewarm(proc: JobProcess) -> None:
    """Runs once per job process, before its event loop exists: no network here."""
    install_log_redaction()
    settings = Settings.from_env()
    if uses_google(settings):
        import_plugin()  # plugins register on a process's main thread: here, not in a job
    proc.userdata["settings"] = settings
    proc.userdata["vad"] = silero.VAD.load()


async def entrypoint(ctx: JobContext) -> None:
    settings: Settings = ctx.proc.userdata.get("settings") or Settings.from_env()
    pool = get_pool(settings)
    pool.register(memory_spec(settings))
    for spec in provider_specs(pool).values():
        pool.register(spec)
    # the first user turn should find every connection open: warm while the room connects
    warming = asyncio.create_task(pool.warm(), name="pool-warm")
    opening = asyncio.create_task(open_memory_service(pool), name="memory-open")

    async def shut_down() -> None:
        # livekit has closed the session by now (GracefulSession lets its reply in flight
        # finish), so nothing uses the clients: learn from the last exchange, flush the
        # writes, then close the pool
        if userdata is not None and userdata.post_turn is not None:
            await userdata.post_turn.aclose(deadline_s=3.0)
        if opening.done() and not opening.cancelled() and opening.exception() is None:
            left = await opening.result().aclose(deadline_s=5.0)
            if left:
                logger.warning("%d memory writes will be replayed at the next start", left)
        for task in (opening, warming):
            task.cancel()
        await asyncio.gather(opening, warming, return_exceptions=True)
        await pool.aclose()

    userdata: SessionData | None = None
    ctx.add_shutdown_callback(shut_down)

    await ctx.connect()
    memory = await opening
    if ctx.is_fake_job():
        user_id = settings.user_id
    else:

        async def pool_stats(_: rtc.RpcInvocationData) -> str:
            return await stats_report(pool, memory.outbox)

        # the same report the tool reads out, for a page in the room (make room's pool panel)
        ctx.room.local_participant.register_rpc_method("getConnectionPoolStats", pool_stats)
        person = await wait_for_person(ctx, settings.participant_wait_s)
        if person is None:
            ctx.shutdown(reason="no participant joined")
            return
        user_id = person.identity

    phrases = Phrases(voice_directory(settings))
    await asyncio.to_thread(phrases.load)  # a few small files, but off the event loop
    assistant = await prepare_assistant(memory, user_id, phrases=phrases)
    # composed (or found in the cache) while the session starts
    greeting = asyncio.create_task(greeting_for(pool, user_id, assistant.memories))
    memory.on_change(lambda user, categories: forget_greeting(pool, user, categories))
    post_turn = PostTurnWorker(pool, memory, user_id)
    userdata = SessionData(
        pool=pool, settings=settings, user_id=user_id, memory=memory, post_turn=post_turn
    )
    session = await build_session(pool, userdata, ctx.proc.userdata.get("vad"))
    follow_turns(session, post_turn)
    speak_up_on_errors(session, phrases)
    if session.tts is not None:
        # rendered once per machine and voice, while the person is greeted
        rendering = asyncio.create_task(phrases.prepare(session.tts), name="phrases")
        _background.add(rendering)
        rendering.add_done_callback(_background.discard)
    # the job ends with its conversation: the person left, or the session failed for good
    session.on("close", lambda _: ctx.shutdown(reason="session closed"))
    await session.start(
        agent=assistant,
        room=ctx.room,
        # the memory belongs to this person: nobody else who joins is heard as them
        room_options=room_io.RoomOptions(participant_identity=user_id),
    )
    words = await first_words(greeting, deadline_s=settings.greeting_deadline_s)
    if words == GENERIC_GREETING:
        phrases.say(session, "greeting", remember=True)
    else:
        session.say(words)
    if ctx.is_fake_job():
        show_agent_words(words)


async def wait_for_person(ctx: JobContext, timeout_s: float) -> rtc.RemoteParticipant | None:
    """The person this job is for: the first one in the room (livekit's own wait has no
    timeout, and a room nobody joins must not hold a job process forever)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await ctx.wait_for_participant()
    except TimeoutError:
        logger.info("nobody joined room %s within %.0f s; ending the job", ctx.room.name, timeout_s)
        return None


async def first_words(greeting: asyncio.Task[str], *, deadline_s: float) -> str:
    """The personal greeting, or the generic one if it is not ready within the deadline:
    a stalled model must not keep the person waiting for the first words."""
    try:
        async with asyncio.timeout(deadline_s):
            return await asyncio.shield(greeting)
    except TimeoutError:
        logger.warning("the greeting took over %.1f s; greeting generically", deadline_s)
        return GENERIC_GREETING
    except Exception as exc:  # no greeting is worth a silent start
        logger.warning("could not compose a greeting: %s", redact(str(exc)))
        return GENERIC_GREETING


def build_server(settings: Settings, command: str = "start") -> AgentServer:
    # the console's first screen is the greeting and a prompt; a worker logs what it does
    level = settings.log_level or ("WARNING" if command == "console" else "INFO")
    options: dict[str, Any] = {"log_level": "WARN" if level == "WARNING" else level}
    if settings.agent_http_port is not None:
        options["port"] = settings.agent_http_port
    server = AgentServer(
        setup_fnc=prewarm,
        prometheus_port=settings.prometheus_port,
        drain_timeout=round(settings.drain_timeout_s),
        load_fnc=conversation_load(settings.max_conversations),
        load_threshold=1.0,
        # processes ready before a burst: starting one is the CPU spike a burst would pay
        num_idle_processes=min(settings.max_conversations, settings.idle_processes),
        # room for finish_session and the memory flush before the process is killed
        shutdown_process_timeout=settings.turn_drain_s + 15.0,
        **options,
    )
    # with a name, rooms get this agent only when dispatched to it (a token's room
    # configuration or the dispatch API); without one, every new room gets it
    server.rtc_session(agent_name=settings.agent_name or "")(entrypoint)
    return server


def portaudio_installed() -> bool:
    """livekit's console imports sounddevice, which cannot load without PortAudio."""
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


def main(argv: list[str]) -> int:
    # the .env of the directory the agent is started from
    load_dotenv(find_dotenv(usecwd=True))
    install_log_redaction()
    # one DEBUG line per SQLite statement drowns the console
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    command = next((arg for arg in argv[1:] if not arg.startswith("-")), "")
    try:
        settings = Settings.from_env()
        if command in {"console", "dev", "start", "connect"}:
            settings.require_openai()
        # the CLI's own --url/--api-key/--api-secret flags stand in for the variables
        if command in {"dev", "start", "connect"} and not any(
            arg.startswith(("--url", "--api-key", "--api-secret")) for arg in argv
        ):
            settings.require_livekit()
    except ConfigError as exc:
        print(f"agent.py: {exc}", file=sys.stderr)
        return 2
    if command == "memory":
        return memory_cli.run(argv[argv.index("memory") + 1 :], settings)
    if uses_google(settings):
        import_plugin()  # on the main thread, before livekit forks its job processes
    if command == "console" and not portaudio_installed():
        print(
            "agent.py: the console needs the PortAudio library, even in text mode; install it "
            "with: sudo apt-get install libportaudio2 (`make run` does this for you)",
            file=sys.stderr,
        )
        return 2
    cli.run_app(build_server(settings, command))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
