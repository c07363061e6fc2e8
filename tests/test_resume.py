"""A conversation that ended without a goodbye is resumed, and only such a one: the mark a
job leaves in the shared cache, read by the next job (another pool, as another process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from livekit.agents import CloseEvent, CloseReason

from pool import ConnectionPool, get_pool
from testbed.openai_server import OpenAIServer, Rule, system_text
from tools.conversation import (
    RESUMED_GREETING,
    SUMMARY_KEY,
    ConversationMark,
    compose_resumption,
)
from tools.memory import Memory
from tools.settings import Settings

WINDOW_S = 600.0


def summary(updated_at: float) -> Memory:
    value = "Grace is planning a trip to Lisbon."
    return Memory("grace", "CONTEXT", SUMMARY_KEY, value, updated_at, updated_at)


@pytest.fixture
async def next_job(settings: Settings) -> AsyncIterator[ConnectionPool]:
    """The pool of the job that starts after this one: same machine, its own process."""
    pool = get_pool(settings)
    yield pool
    await pool.aclose()


async def ended(pool: ConnectionPool, reason: CloseReason) -> None:
    mark = ConversationMark(pool.cache, "grace", "room-1")
    await mark.set()
    mark.on_close(CloseEvent(reason=reason, error=None))
    await mark.aclose()


@pytest.mark.parametrize("reason", [CloseReason.JOB_SHUTDOWN, CloseReason.ERROR])
async def test_a_conversation_ended_without_a_goodbye_was_cut_off(
    pool: ConnectionPool, next_job: ConnectionPool, reason: CloseReason
) -> None:
    await ended(pool, reason)
    mark = ConversationMark(next_job.cache, "grace", "room-1")
    assert await mark.was_cut_off([summary(time.time())], window_s=WINDOW_S)
    # the same person in a new room is on a new visit
    elsewhere = ConversationMark(next_job.cache, "grace", "room-2")
    assert not await elsewhere.was_cut_off([summary(time.time())], window_s=WINDOW_S)


async def test_after_a_goodbye_the_next_visit_is_a_new_conversation(
    pool: ConnectionPool, next_job: ConnectionPool
) -> None:
    await ended(pool, CloseReason.PARTICIPANT_DISCONNECTED)
    mark = ConversationMark(next_job.cache, "grace", "room-1")
    assert not await mark.was_cut_off([summary(time.time())], window_s=WINDOW_S)


async def test_a_first_visit_and_a_stale_break_are_not_resumed(
    pool: ConnectionPool, next_job: ConnectionPool
) -> None:
    mark = ConversationMark(next_job.cache, "grace", "room-1")
    assert not await mark.was_cut_off([], window_s=WINDOW_S)
    await ended(pool, CloseReason.JOB_SHUTDOWN)
    await asyncio.sleep(0.3)
    # the mark and the last exchange learned from, both older than the window
    assert not await mark.was_cut_off([summary(time.time() - 900)], window_s=0.2)
    assert await mark.was_cut_off([summary(time.time() - 900)], window_s=WINDOW_S)


async def test_the_resumption_is_composed_from_the_running_summary(
    pool: ConnectionPool, server: OpenAIServer
) -> None:
    said = "Sorry, we were cut off. You were planning Lisbon; shall we go on?"
    server.script(Rule(text=said, when=lambda b: "cut off a moment ago" in system_text(b)))
    assert await compose_resumption(pool, [summary(time.time())], model="gpt-4o-mini") == said
    (body,) = server.bodies("/chat/completions")
    assert body["messages"][-1]["content"] == "Grace is planning a trip to Lisbon."
    # cut off before anything was learned: the fixed apology, no model call
    assert await compose_resumption(pool, [], model="gpt-4o-mini") == RESUMED_GREETING
    assert server.count("/chat/completions") == 1
