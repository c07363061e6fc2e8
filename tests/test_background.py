"""Learning after each turn: in parallel, off the reply's path, durable, and recalled later."""

from __future__ import annotations

import json
import threading

from livekit.agents import AgentSession
from livekit.agents.llm import ChatMessage
from livekit.agents.voice.events import ConversationItemAddedEvent

from agent import Assistant
from pool import get_pool
from testbed.openai_server import Fault, OpenAIServer, Rule, system_text
from tests.support.sessions import typed_turn
from tools.conversation import PostTurnWorker, SessionData, build_session, follow_turns, parse_facts
from tools.memory import MAX_VALUE_BYTES, MEMORY_BLOCK_START, open_memory_service
from tools.settings import Settings


def is_extraction(body: dict) -> bool:  # type: ignore[type-arg]
    return "Extract facts" in system_text(body)


def is_summary(body: dict) -> bool:  # type: ignore[type-arg]
    return "running summary" in system_text(body)


def is_turn(body: dict) -> bool:  # type: ignore[type-arg]
    return not is_extraction(body) and not is_summary(body)


async def test_a_slow_extraction_does_not_delay_the_next_reply(
    settings: Settings, server: OpenAIServer
) -> None:
    held = threading.Event()  # the model answers background work only when released
    server.script(
        Rule(text='{"memories": []}', when=is_extraction, fault=Fault(hold=held), times=None),
        Rule(text="A summary.", when=is_summary, fault=Fault(hold=held), times=None),
    )
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    worker = PostTurnWorker(pool, memory, "ada", timeout_s=30)
    userdata = SessionData(pool=pool, settings=settings, user_id="ada", memory=memory)
    try:
        session: AgentSession[SessionData]
        async with await build_session(pool, settings, userdata, vad=None) as session:
            follow_turns(session, worker)
            await session.start(Assistant())
            first = await session.run(user_input="I like tea")
            second = await session.run(user_input="and biscuits")
            # both replies arrived while the first extraction was still waiting on the model
            assert worker.pending >= 1 and worker.processed == 0
            assert second.expect[0].event().item.text_content == "You said: and biscuits"
            assert first.expect[0].event().item.text_content == "You said: I like tea"
        await worker.aclose(deadline_s=0.1)  # cancelled cleanly at shutdown
        assert worker.pending == 0
    finally:
        held.set()
        await memory.aclose()
        await pool.aclose()


async def test_facts_learned_in_one_session_are_recalled_in_the_next(
    settings: Settings, server: OpenAIServer
) -> None:
    learned = {"memories": [{"category": "PREFERENCE", "key": "drink", "value": "green tea"}]}
    server.script(
        Rule(text=json.dumps(learned), when=is_extraction),
        Rule(text="Ada likes green tea.", when=is_summary),
    )
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    worker = PostTurnWorker(pool, memory, "ada")
    userdata = SessionData(pool=pool, settings=settings, user_id="ada", memory=memory)
    async with await build_session(pool, settings, userdata, vad=None) as session:
        follow_turns(session, worker)
        await session.start(Assistant())
        await session.run(user_input="I really like green tea")
    await worker.aclose(deadline_s=10)
    await memory.aclose()
    await pool.aclose()
    assert worker.learned == 2  # the preference and the summary

    # the next session: a new pool and memory service, as in a new job process
    await typed_turn(settings, "ada", "what do I like to drink?")

    turn = [b for b in server.bodies("/chat/completions") if is_turn(b)][-1]
    block = system_text(turn).split(MEMORY_BLOCK_START, 1)[1]
    assert "green tea" in block and "conversation_summary" in block


async def test_a_summary_the_model_made_too_long_or_broken_is_stored_fitted(
    settings: Settings, server: OpenAIServer
) -> None:
    rambling = "\x00Ada likes tea. " + "é" * 5000 + " \ud83d"
    server.script(
        Rule(text="{}", when=is_extraction),
        Rule(text=rambling, when=is_summary),
    )
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    worker = PostTurnWorker(pool, memory, "ada")
    try:
        worker.submit("I like tea", "Noted.")
        await worker.aclose(deadline_s=10)
        assert worker.learned == 1
    finally:
        await memory.aclose()  # the outbox's writes land
        await pool.aclose()
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    try:
        [summary] = await memory.recall("ada", "CONTEXT")
    finally:
        await memory.aclose()
        await pool.aclose()
    assert summary.value.startswith("Ada likes tea. éé")
    assert len(summary.value.encode()) <= MAX_VALUE_BYTES
    assert "\x00" not in summary.value and "\ud83d" not in summary.value


def test_malformed_extractions_are_dropped_item_by_item() -> None:
    reply = json.dumps(
        {
            "memories": [
                {"category": "FACT", "key": "name", "value": "Ada"},
                {"category": "NOPE", "key": "x", "value": "y"},
                {"category": "FACT", "key": "", "value": "empty key"},
                "not an object",
            ]
        }
    )
    assert [(w.key, w.value) for w in parse_facts("ada", reply)] == [("name", "Ada")]
    assert parse_facts("ada", "not json at all") == []
    assert parse_facts("ada", '{"memories": "nope"}') == []


class Exchanges(PostTurnWorker):
    """What ``follow_turns`` hands on, kept instead of processed."""

    def __init__(self) -> None:
        self.handed: list[tuple[str, str]] = []

    def submit(self, user_text: str, agent_text: str) -> None:
        self.handed.append((user_text, agent_text))


async def test_a_reply_cut_by_the_person_going_on_completes_no_exchange() -> None:
    session: AgentSession[None] = AgentSession()
    exchanges = Exchanges()
    follow_turns(session, exchanges)
    for role, text, cut in [
        ("user", "Order a pizza", False),
        ("assistant", "You said:", True),
        ("user", "with extra cheese", False),
        ("assistant", "One pizza with extra cheese.", False),
    ]:
        item = ChatMessage(role=role, content=[text], interrupted=cut)  # type: ignore[arg-type]
        session.emit("conversation_item_added", ConversationItemAddedEvent(item=item))
    # learned from as the model read it: one turn, answered whole
    assert exchanges.handed == [("Order a pizza with extra cheese", "One pizza with extra cheese.")]


async def test_words_no_finished_reply_answered_are_learned_from_when_the_session_closes() -> None:
    session: AgentSession[None] = AgentSession()
    exchanges = Exchanges()
    follow_turns(session, exchanges)
    for role, text, cut in [
        ("user", "My name is", False),
        ("assistant", "Go", True),
        ("user", "Robin", False),
        ("assistant", "Nice to meet", True),  # the person left mid-reply
    ]:
        item = ChatMessage(role=role, content=[text], interrupted=cut)  # type: ignore[arg-type]
        session.emit("conversation_item_added", ConversationItemAddedEvent(item=item))
    assert exchanges.handed == []
    session.emit("close", None)
    assert exchanges.handed == [("My name is Robin", "Nice to meet")]  # the last reply's words
