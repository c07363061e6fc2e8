"""A turn whose first provider fails or stalls is answered by the next, in the same turn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
from livekit.agents import AgentSession

from agent import Assistant
from pool import ConnectionPool, get_pool
from testbed.openai_server import Fault, OpenAIServer, Rule
from tests.support.services import settings_of
from tools.conversation import SessionData, build_session
from tools.settings import Provider, Settings


@pytest.fixture
def backup() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture
async def two_providers(
    settings: Settings, server: OpenAIServer, backup: OpenAIServer
) -> AsyncIterator[ConnectionPool]:
    chained = replace(
        settings,
        llm_providers=(
            Provider(name="primary", base_url=server.base_url, api_key="primary-key-123"),
            Provider(name="backup", base_url=backup.base_url, api_key="backup-key-456"),
        ),
        llm_ttft_deadline_s=0.4,
        breaker_failure_threshold=1,
        breaker_reset_s=60,
    )
    pool = get_pool(chained)
    yield pool
    await pool.aclose()


async def run_turn(pool: ConnectionPool, text: str) -> str:
    settings = settings_of(pool)
    userdata = SessionData(pool=pool, settings=settings, user_id="ada")
    session: AgentSession[SessionData]
    async with await build_session(pool, settings, userdata, vad=None) as session:
        await session.start(Assistant())
        result = await session.run(user_input=text)
        return str(result.expect[0].event().item.text_content)


async def test_an_erroring_provider_is_replaced_within_the_turn_and_then_skipped(
    two_providers: ConnectionPool, server: OpenAIServer, backup: OpenAIServer
) -> None:
    server.script(Rule(fault=Fault(status=500), times=None))
    backup.script(Rule(text="Backup here.", times=None))

    assert await run_turn(two_providers, "hello") == "Backup here."
    assert await run_turn(two_providers, "again") == "Backup here."

    # the primary's breaker opened on its failure: the second turn sent it nothing
    assert server.count("/chat/completions") == 1
    stats = two_providers.stats().resources
    primary = stats["primary.llm"]
    assert (primary.breaker, primary.health) == ("open", "FAILED")
    assert stats["backup.llm"].health == "HEALTHY"


async def test_a_provider_that_stalls_before_its_first_token_is_replaced(
    two_providers: ConnectionPool, server: OpenAIServer, backup: OpenAIServer
) -> None:
    # accepts the request, sends headers and a role chunk, then nothing
    server.script(Rule(text="never said", fault=Fault(stall_after_chunks=1, stall_s=10)))
    backup.script(Rule(text="Backup answered."))

    assert await run_turn(two_providers, "are you there?") == "Backup answered."
    assert server.count("/chat/completions") == 1
    assert backup.count("/chat/completions") == 1
    # the stall counts against the primary: its breaker opened, so no recovery probe reached it
    primary = two_providers.stats().resources["primary.llm"]
    assert (primary.counts.stalls, primary.breaker) == (1, "open")
