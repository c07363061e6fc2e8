from __future__ import annotations

import asyncio
import gc
import json
import threading
import warnings

import openai
import pytest

from pool import ClientState, ConnectionPool, Connections, PoolClosedError, WrongLoopError, get_pool
from testbed.openai_server import OpenAIServer
from tools.settings import Settings


async def chat(pool: ConnectionPool, text: str = "hi") -> str:
    client = await pool.openai()
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )
    return reply.choices[0].message.content or ""


async def test_clients_are_created_once_and_cached(pool: ConnectionPool) -> None:
    first, again = await asyncio.gather(pool.openai(), pool.openai())
    assert first is again
    assert await pool.http() is await pool.http()


async def test_warm_opens_the_connection_the_first_request_reuses(
    pool: ConnectionPool, server: OpenAIServer
) -> None:
    report = await pool.warm()
    assert report["openai"].startswith("ok")
    assert server.count("/models") == 1

    assert await chat(pool, "first turn") == "You said: first turn"

    assert server.connections == 1
    connections = pool.stats().resources["openai"].connections
    assert connections == Connections(opened=1, reused=1)


async def test_sequential_requests_reuse_one_tcp_connection(
    pool: ConnectionPool, server: OpenAIServer
) -> None:
    for turn in range(10):
        await chat(pool, f"turn {turn}")
    assert server.connections == 1
    openai_stats = pool.stats().resources["openai"]
    assert openai_stats.counts.requests == 10
    assert openai_stats.connections == Connections(opened=1, reused=9)


async def test_stats_are_json_and_count_failures(
    pool: ConnectionPool, server: OpenAIServer
) -> None:
    from testbed.openai_server import Fault, Rule

    server.script(Rule(fault=Fault(status=503)))
    with pytest.raises(openai.InternalServerError):
        await chat(pool)
    await chat(pool)

    stats = json.loads(json.dumps(pool.stats().as_dict()))
    entry = stats["resources"]["openai"]
    counts = entry["counts"]
    assert (counts["requests"], counts["successes"], counts["failures"]) == (2, 1, 1)
    assert entry["success_rate"] == 0.5
    assert entry["latency_ms"]["max"] >= entry["latency_ms"]["min"] > 0
    assert "503" in entry["last_error"]
    assert entry["created_at"] is not None


def test_two_loops_in_two_threads_get_distinct_clients(settings: Settings) -> None:
    seen: dict[str, tuple[int, int, int]] = {}

    def job(name: str) -> None:
        async def run() -> None:
            pool = get_pool(settings)
            try:
                client, session = await pool.openai(), await pool.http()
                await chat(pool, name)
                seen[name] = (id(pool), id(client), id(session))
            finally:
                await pool.aclose()

        asyncio.run(run())

    threads = [threading.Thread(target=job, args=(f"job-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    first, second = seen["job-0"], seen["job-1"]
    assert all(a != b for a, b in zip(first, second, strict=True))


async def test_a_pool_refuses_a_second_event_loop(settings: Settings) -> None:
    pool = get_pool(settings)
    await pool.openai()
    errors: list[BaseException] = []

    def other_loop() -> None:
        async def use() -> None:
            await pool.openai()

        try:
            asyncio.run(use())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=other_loop)
    thread.start()
    thread.join(10)
    await pool.aclose()
    assert isinstance(errors[0], WrongLoopError)


async def test_aclose_twice_closes_everything_without_resource_warnings(settings: Settings) -> None:
    pool = get_pool(settings)
    await pool.warm()
    client, session = await pool.openai(), await pool.http()
    sync_client = pool.openai_sync()
    sync_client.models.list()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await pool.aclose()
        await pool.aclose()
        del client, session, sync_client
        gc.collect()

    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert pool.stats().state == "closed"
    assert all(r.client is ClientState.NOT_CREATED for r in pool.stats().resources.values())
    with pytest.raises(PoolClosedError):
        await pool.openai()
    assert get_pool(settings) is not pool  # the loop gets a fresh pool after close


async def test_sync_client_shares_the_openai_metrics(pool: ConnectionPool) -> None:
    models = await asyncio.to_thread(lambda: pool.openai_sync().models.list())
    assert models.data[0].id == "gpt-4o-mini"
    assert pool.stats().resources["openai"].counts.requests == 1


async def test_cleanup_drops_a_client_closed_underneath(pool: ConnectionPool) -> None:
    session = await pool.http()
    await session.close()

    report = await pool.cleanup()

    assert report["dropped_broken"] == ["http"]
    assert (await pool.http()) is not session
    assert pool.stats().resources["http"].rebuilds == 1


async def test_a_closed_client_is_rebuilt_on_next_acquire(pool: ConnectionPool) -> None:
    client = await pool.openai()
    await client.close()
    assert await chat(pool, "after close") == "You said: after close"
    assert (await pool.openai()) is not client
