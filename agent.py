"""A LiveKit voice agent that remembers its users, on a per-process resource pool.

python agent.py console --text   talk to it in the terminal, no LiveKit server
python agent.py dev | start      run it as a LiveKit worker
python agent.py memory outbox    memory writes waiting or set aside; `memory replay` retries
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from dotenv import find_dotenv, load_dotenv
from livekit import rtc
from livekit.agents import (
    Agent,
    AgentServer,
    FlushSentinel,
    JobContext,
    JobProcess,
    RunContext,
    cli,
    function_tool,
    llm,
)
from livekit.agents.voice import ModelSettings, room_io

from pool import ConfigError, install_log_redaction, warm_tls
from tools.conversation import (
    PHRASES,
    Acknowledgement,
    ConversationMark,
    JobResources,
    Opening,
    Phrases,
    PostTurnWorker,
    SessionData,
    VoiceTrack,
    build_session,
    follow_turns,
    forget_greeting,
    identity_user,
    memory_user,
    named_in_room,
    register_pool_panel,
    speak_up_on_errors,
    tell_reply_waits,
    voice_directory,
    voice_id,
    wait_for_person,
    whole_turns,
)
from tools.dispatch import expected_person, is_ready_room
from tools.memory import (
    PROMPT_TOKENS,
    Category,
    Memory,
    MemoryService,
    forget_memory,
    memory_block,
    recall_memory,
    recall_within_budget,
    run_memory_command,
    save_memory,
)
from tools.pool_tools import cleanup_report, stats_report
from tools.providers import build_tts, import_plugin, uses_google
from tools.settings import Settings
from tools.worker import (
    ConversationServer,
    command_of,
    import_ahead,
    prepare_process,
    quiet_unused_cloud_warnings,
    server_options,
    settings_for,
    settle_heap,
    show_agent_words,
    silence_detector,
    store_left_writes_at_start,
)

logger = logging.getLogger("agent")
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


class Assistant(Agent):
    def __init__(
        self,
        *,
        memories: Sequence[Memory] = (),
        instructions: str = INSTRUCTIONS,
        acknowledgement: Acknowledgement | None = None,
        memory_tokens: int = PROMPT_TOKENS,
    ) -> None:
        """``acknowledgement``: what is said while the model is slow to answer;
        ``memory_tokens``: what the memories may take of the prompt."""
        self.memories = list(memories)
        self.memory_tokens = memory_tokens
        self.acknowledgement = acknowledgement or Acknowledgement(after_s=None, text="")
        self._late: asyncio.Task[None] | None = None
        chat_ctx = llm.ChatContext()
        if memories:
            chat_ctx.add_message(role="system", content=memory_block(memories, memory_tokens))
        super().__init__(instructions=instructions, chat_ctx=chat_ctx)

    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterator[llm.ChatChunk | str | FlushSentinel]:
        reply = Agent.default.llm_node(self, whole_turns(chat_ctx), tools, model_settings)
        async for chunk in self.acknowledgement.reply(reply):
            yield chunk

    async def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterator[rtc.AudioFrame]:
        def synthesize(words: AsyncIterable[str]) -> AsyncIterable[rtc.AudioFrame]:
            return Agent.default.tts_node(self, words, model_settings)

        async for frame in self.acknowledgement.speak(text, synthesize):
            yield frame

    async def add_memories(self, memories: Sequence[Memory]) -> None:
        """Memories that arrived after the session started join the conversation."""
        self.memories.extend(memories)
        if memories:
            chat_ctx = self.chat_ctx.copy()
            block = memory_block(memories, self.memory_tokens)
            chat_ctx.add_message(role="system", content=block)
            await self.update_chat_ctx(chat_ctx)

    def add_memories_when_loaded(self, recall: asyncio.Task[list[Memory]]) -> None:
        """The user's memories, when the store answers after the session started."""

        async def arrive() -> None:
            try:
                memories = await recall
            except Exception:  # already logged by recall_within_budget
                return
            await self.add_memories(memories)

        self._late = asyncio.create_task(arrive(), name="late-memories")

    @function_tool(name="saveMemory")
    async def save_memory(
        self, context: RunContext[SessionData], category: Category, key: str, value: str
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
        category: Category | None = None,
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
        self, context: RunContext[SessionData], category: Category, key: str
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


def _memory(data: SessionData) -> MemoryService:
    if data.memory is None:
        raise RuntimeError("This session was started without a memory service.")
    return data.memory


def loaded_phrases(settings: Settings) -> Phrases:
    phrases = Phrases(voice_directory(settings))
    phrases.load()
    return phrases


def prewarm(proc: JobProcess) -> None:
    """Runs once per job process, before its event loop exists: no network here."""
    install_log_redaction()
    settings = Settings.from_env()
    if uses_google(settings):
        import_plugin()  # plugins register on a process's main thread: here, not in a job
    proc.userdata["settings"] = settings
    # the VAD only says that speech stopped; whether the turn ended is for the words to say
    proc.userdata["vad"] = silence_detector(settings.vad_silence_s)
    # the sentences said in trouble, from disk: a few small files, read before any job
    proc.userdata["phrases"] = loaded_phrases(settings)
    import_ahead()
    warm_tls()  # the CA bundle parsed here, not on the first job's event loop
    settle_heap()


async def entrypoint(ctx: JobContext) -> None:
    settings: Settings = ctx.proc.userdata.get("settings") or Settings.from_env()
    ctx.log_context_fields = {"room": ctx.room.name}
    # the memory store opens and the room connects at once
    job = JobResources(settings)
    ctx.add_shutdown_callback(job.aclose)
    connecting = asyncio.ensure_future(ctx.connect())

    in_console = ctx.is_fake_job()
    expected = None if in_console else expected_person(ctx.job.metadata)
    if not in_console and is_ready_room(ctx.job.metadata):
        # connected before anyone asked: the issuer names the person when it gives the room out
        await connecting
        job.voice = VoiceTrack(ctx.room)  # in what their connection receives on joining
        expected = await named_in_room(ctx.room)
        if expected is None:
            ctx.shutdown(reason="the ready room was never given out")
            return
    if in_console:  # one person, named by USER_ID
        user_id = identity = settings.user_id
    elif expected is not None:
        # the dispatch named them: their memories and greeting load while the room connects,
        # and the session starts before they are in (they are checked when they are)
        user_id, identity = identity_user(expected), expected
    else:
        await connecting
        person = await wait_for_person(ctx, settings.participant_wait_s)
        if person is None:
            ctx.shutdown(reason="no participant joined")
            return
        user_id, identity = memory_user(person), person.identity
    ctx.log_context_fields = {"room": ctx.room.name, "user": user_id}

    memory = await job.memory()
    phrases = job.phrases = ctx.proc.userdata.get("phrases") or loaded_phrases(settings)
    assistant = await prepare_assistant(memory, user_id, phrases=phrases)
    job.mark = None if in_console else ConversationMark(job.pool.cache, user_id, ctx.room.name)
    voice = voice_id(settings)
    opening = job.opening = await Opening.begin(
        job.pool, job.mark, user_id, assistant.memories, settings, voice=voice
    )
    memory.on_change(
        lambda user, categories: forget_greeting(job.pool, user, categories, voice=voice)
    )
    job.post_turn = PostTurnWorker(job.pool, memory, user_id)
    userdata = SessionData(
        pool=job.pool, settings=settings, user_id=user_id, memory=memory, post_turn=job.post_turn
    )
    session = await build_session(job.pool, settings, userdata, ctx.proc.userdata.get("vad"))
    follow_turns(session, job.post_turn)
    speak_up_on_errors(session, phrases)
    if session.tts is not None:
        # once per machine and voice
        phrases.prepare_in_background(lambda: build_tts(job.pool, settings))
    # the job ends with its conversation: the person left, or the session failed for good
    if job.mark is not None:
        session.on("close", job.mark.on_close)
    session.on("close", lambda _: ctx.shutdown(reason="session closed"))
    await connecting  # livekit's room IO needs the room connected when it starts
    if not in_console and job.voice is None:
        job.voice = VoiceTrack(ctx.room)  # published now, not once the person is in
    if job.voice is not None:
        session.output.audio = job.voice.output
    await session.start(
        agent=assistant,
        room=ctx.room,
        room_options=room_io.RoomOptions(
            # the memory belongs to this person: nobody else who joins is heard as them
            participant_identity=identity,
            audio_output=job.voice is None,
        ),
        # livekit's session host answers anyone in the room on its remote-session topic
        # (the instructions with this person's memories, the conversation, a turn run as
        # theirs) and broadcasts every session event to all of them
        session_host=False,
    )
    gc.freeze()  # what the session built lives as long as it: out of the collector's way
    if expected is not None and not await expected_person_joined(ctx, settings, expected, user_id):
        return
    if not in_console:
        register_pool_panel(ctx.room, identity, lambda: stats_report(job.pool, memory.outbox))
        tell_reply_waits(session, ctx.room, identity)

    words, job.greeting_audio = await opening.say(
        session, phrases, deadline_s=settings.greeting_deadline_s
    )
    job.warm()  # for the first user turn, now that the first words are on their way
    if job.mark is not None:
        await job.mark.set()  # until their goodbye, a lost machine means a cut-off
    if in_console:
        show_agent_words(words)  # livekit's text console prints only replies to typed words


async def expected_person_joined(
    ctx: JobContext, settings: Settings, identity: str, user_id: str
) -> bool:
    """Whether the person the dispatch named came, as the memory user whose session was
    started; if not, the job ends."""
    person = await wait_for_person(ctx, settings.participant_wait_s, identity=identity)
    if person is None:
        ctx.shutdown(reason="no participant joined")
        return False
    if memory_user(person) != user_id:  # a caller is their number, not the named identity
        logger.warning("the person who joined is not the memory user the dispatch named")
        ctx.shutdown(reason="not the person the dispatch named")
        return False
    return True


async def prepare_assistant(
    memory: MemoryService, user_id: str, *, phrases: Phrases | None = None
) -> Assistant:
    """An Assistant that knows the user's memories, if the store answers within budget;
    otherwise it starts without them and adds them when they arrive."""
    settings = memory.settings
    budget_s = settings.memory_recall_budget_ms / 1000
    memories, late = await recall_within_budget(memory, user_id, budget_s)
    acknowledgement = Acknowledgement(
        after_s=settings.ack_after_s,
        text=PHRASES["one_moment"],
        audio=lambda: phrases.frames("one_moment") if phrases else None,
    )
    assistant = Assistant(
        memories=memories or (),
        acknowledgement=acknowledgement,
        memory_tokens=settings.memory_prompt_tokens,
    )
    if memories is None:
        assistant.add_memories_when_loaded(late)
    return assistant


def build_server(settings: Settings, command: str = "start") -> AgentServer:
    server = ConversationServer(
        capacity=settings.max_conversations,
        target_load=settings.server_target_load,
        setup_fnc=prewarm,
        **server_options(settings, command),
    )
    # with a name, rooms get this agent only when dispatched to it (a token's room
    # configuration or the dispatch API); without one, every new room gets it
    server.rtc_session(agent_name=settings.agent_name or "")(entrypoint)
    store_left_writes_at_start(server, settings)
    return server


def main(argv: list[str]) -> int:
    # the .env of the directory the agent is started from
    load_dotenv(find_dotenv(usecwd=True))
    install_log_redaction()
    # one DEBUG line per SQLite statement drowns the console
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    command = command_of(argv)
    try:
        settings = settings_for(command, argv)
    except ConfigError as exc:
        print(f"agent.py: {exc}", file=sys.stderr)
        return 2
    if command == "memory":
        return run_memory_command(argv[argv.index("memory") + 1 :], settings)
    prepare_process(settings, command)
    cli.run_app(build_server(settings, command))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
