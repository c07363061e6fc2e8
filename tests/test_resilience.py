"""Retries, breakers, timeouts and budgets, by fault injection against the local server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import openai
import pytest
from prometheus_client import REGISTRY

from pool import CircuitOpenError, ConnectionPool, RetryPolicy, get_pool, stream_with_retry
from testbed.openai_server import Fault, OpenAIServer, Rule
from tools.settings import Settings

ASK = [{"role": "user", "content": "hi"}]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def fragile(settings: Settings) -> AsyncIterator[ConnectionPool]:
    pool = get_pool(
        replace(
            settings, breaker_failure_threshold=3, breaker_reset_s=0.2, openai_read_timeout_s=0.5
        )
    )
    yield pool
    await pool.aclose()


async def ask(pool: ConnectionPool) -> str:
    client = await pool.openai()
    reply = await client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
    return reply.choices[0].message.content or ""


async def test_a_storm_of_500s_opens_the_breaker_and_later_calls_send_nothing(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    server.script(Rule(fault=Fault(status=500), times=None))
    rejected_before = sample("agent_pool_rejected_calls_total", resource="openai.llm")

    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await ask(fragile)
    for _ in range(7):
        with pytest.raises(CircuitOpenError, match="no request was sent"):
            await ask(fragile)

    assert server.count("/chat/completions") == 3
    # chat requests are the endpoint's LLM capability: its breaker opened, nothing else's
    stats = fragile.stats().resources
    entry = stats["openai.llm"]
    assert (entry.breaker, entry.health, entry.counts.rejected) == ("open", "FAILED", 7)
    assert stats["openai"].breaker == "closed"
    assert sample("agent_pool_breaker_state", resource="openai.llm") == 2.0
    assert sample("agent_pool_rejected_calls_total", resource="openai.llm") - rejected_before == 7


async def test_half_open_trial_then_recovery_or_reopen(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    server.script(Rule(fault=Fault(status=503), times=4))
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await ask(fragile)
    await asyncio.sleep(0.25)
    with pytest.raises(openai.InternalServerError):  # the one trial fails: open again
        await ask(fragile)
    assert fragile.stats().resources["openai.llm"].breaker == "open"
    with pytest.raises(CircuitOpenError):
        await ask(fragile)

    await asyncio.sleep(0.25)
    assert await ask(fragile) == "You said: hi"  # the trial succeeds: closed
    assert fragile.stats().resources["openai.llm"].breaker == "closed"
    assert await ask(fragile) == "You said: hi"
    assert server.count("/chat/completions") == 6


async def test_cleanup_resets_an_open_breaker(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    server.script(Rule(fault=Fault(status=500), times=3))
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await ask(fragile)
    report = await fragile.cleanup()
    assert report["breakers_reset"] == ["openai.llm"]
    assert await ask(fragile) == "You said: hi"


async def test_429_retry_after_is_honoured(fragile: ConnectionPool, server: OpenAIServer) -> None:
    server.script(Rule(fault=Fault(status=429, headers={"Retry-After": "1"})))
    waits: list[float] = []
    policy = RetryPolicy(base_s=0.01, max_retries=2)
    client = await fragile.openai()

    reply = await policy.call(
        lambda: client.chat.completions.create(model="m", messages=ASK),  # type: ignore[arg-type]
        on_retry=lambda exc, delay: waits.append(delay),
    )

    assert reply.choices[0].message.content == "You said: hi"
    assert waits == [pytest.approx(1.0, abs=0.05)]
    assert server.count("/chat/completions") == 2


async def test_4xx_other_than_408_and_429_is_not_retried(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    server.script(Rule(fault=Fault(status=400)))
    with pytest.raises(openai.BadRequestError):
        await fragile.call("openai", lambda: ask(fragile))
    assert server.count("/chat/completions") == 1


async def test_a_response_slower_than_the_timeout_counts_as_a_timeout(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    server.script(Rule(fault=Fault(delay_s=1.5)))
    with pytest.raises(openai.APITimeoutError):
        await ask(fragile)
    entry = fragile.stats().resources["openai"]
    assert (entry.counts.timeouts, entry.counts.failures) == (1, 1)
    assert "Timeout" in entry.last_error


async def test_a_reset_mid_stream_is_a_failure_and_is_not_retried_after_the_first_chunk(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    server.script(Rule(text="one two three four five", fault=Fault(reset_after_chunks=3)))
    client = await fragile.openai()

    async def open_stream() -> AsyncIterator[object]:
        return await client.chat.completions.create(model="m", messages=ASK, stream=True)  # type: ignore[arg-type, return-value]

    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream_with_retry(RetryPolicy(base_s=0.01), open_stream):
            received.append(chunk)

    assert len(received) == 3  # what reached the caller stays said; nothing is repeated
    assert server.count("/chat/completions") == 1
    assert fragile.stats().resources["openai"].counts.failures == 1


async def test_a_stream_that_fails_before_its_first_chunk_is_retried(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    server.script(Rule(fault=Fault(status=502)))
    client = await fragile.openai()

    async def open_stream() -> AsyncIterator[object]:
        return await client.chat.completions.create(model="m", messages=ASK, stream=True)  # type: ignore[arg-type, return-value]

    chunks = [c async for c in stream_with_retry(RetryPolicy(base_s=0.01), open_stream)]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # type: ignore[attr-defined]
    assert text == "You said: hi"
    assert server.count("/chat/completions") == 2


async def test_the_retry_budget_caps_attempts_during_a_long_outage(
    settings: Settings, server: OpenAIServer
) -> None:
    pool = get_pool(replace(settings, breaker_failure_threshold=10_000))
    server.script(Rule(fault=Fault(status=503), times=None))
    policy = RetryPolicy(base_s=0.001, max_retries=3, jitter="none")
    try:
        for _ in range(100):
            with pytest.raises(openai.InternalServerError):
                await pool.call("openai", lambda: ask(pool), policy=policy)
        denied = pool.stats().resources["openai"].retries_denied
    finally:
        await pool.aclose()

    requests = server.count("/chat/completions")
    # without a budget: 400 requests. With it: 100 first attempts, 10 banked, 10 earned
    assert requests <= 121
    assert denied >= 79


async def test_calls_that_are_not_idempotent_are_made_once(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    server.script(Rule(fault=Fault(status=503)))
    with pytest.raises(openai.InternalServerError):
        await fragile.call("openai", lambda: ask(fragile), idempotent=False)
    assert server.count("/chat/completions") == 1


async def test_prometheus_counts_requests_latency_and_connections(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    before = sample("agent_pool_requests_total", resource="openai", outcome="success")
    reused = sample("agent_pool_connections_total", resource="openai", kind="reused")
    timed = sample("agent_pool_request_duration_seconds_count", resource="openai")
    for _ in range(3):
        await ask(fragile)
    assert sample("agent_pool_requests_total", resource="openai", outcome="success") - before == 3
    assert sample("agent_pool_connections_total", resource="openai", kind="reused") - reused == 2
    assert sample("agent_pool_request_duration_seconds_count", resource="openai") - timed == 3


async def test_a_stream_counts_when_it_begins_and_a_later_break_turns_it_into_a_failure(
    fragile: ConnectionPool, server: OpenAIServer
) -> None:
    server.script(Rule(text="one two three four", fault=Fault(reset_after_chunks=2)))
    client = await fragile.openai()
    stream = await client.chat.completions.create(model="m", messages=ASK, stream=True)  # type: ignore[arg-type]
    chunks = aiter(stream)
    await anext(chunks)
    entry = fragile.stats().resources["openai"]
    # mid-stream, e.g. while a tool runs: the provider is answering, and the stats say so
    assert (entry.counts.requests, entry.counts.successes, entry.health) == (1, 1, "HEALTHY")

    with pytest.raises(openai.APIConnectionError):
        async for _ in chunks:
            pass
    entry = fragile.stats().resources["openai"]
    assert (entry.counts.requests, entry.counts.successes, entry.counts.failures) == (1, 0, 1)
    assert entry.counts.stream_failures == 1
