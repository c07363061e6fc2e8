"""The two-layer cache: single-flight, expiry, errors, and hits across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from pool import Cache, get_pool
from tools.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


async def test_100_concurrent_misses_make_one_upstream_call(settings: Settings) -> None:
    pool = get_pool(settings)
    calls = 0

    async def upstream() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "hello"

    try:
        results = await asyncio.gather(
            *(pool.cache.cached_async_call("k", upstream) for _ in range(100))
        )
    finally:
        await pool.aclose()
    assert results == ["hello"] * 100
    assert calls == 1


async def test_errors_are_not_cached_and_every_waiter_sees_them() -> None:
    cache = Cache()
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise RuntimeError("upstream down")
        return "fine"

    outcomes = await asyncio.gather(
        *(cache.cached_async_call("k", flaky) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert await cache.cached_async_call("k", flaky) == "fine"
    assert attempts == 2


async def test_expiry_is_honoured_in_the_shared_layer(settings: Settings) -> None:
    pool = get_pool(settings)
    values = iter(["first", "second"])

    async def upstream() -> str:
        return next(values)

    try:
        # shorter than the local layer's TTL: kept by the shared layer alone
        assert await pool.cache.cached_async_call("short", upstream, ttl=0.2) == "first"
        assert await pool.cache.cached_async_call("short", upstream, ttl=0.2) == "first"
        await asyncio.sleep(0.3)
        assert await pool.cache.cached_async_call("short", upstream, ttl=0.2) == "second"
    finally:
        await pool.aclose()


async def test_expiry_is_honoured_in_the_local_layer() -> None:
    cache = Cache(ttl_s=0.2)
    values = iter(["first", "second"])

    async def upstream() -> str:
        return next(values)

    assert await cache.cached_async_call("k", upstream) == "first"
    await asyncio.sleep(0.3)
    assert await cache.cached_async_call("k", upstream) == "second"


def fill_from_another_process(sqlite_path: str, redis_url: str, key: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.cache_writer", sqlite_path, redis_url, key, value],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == f"{value}", result.stderr[-2000:]


@pytest.mark.parametrize("layer", ["sqlite", "redis"])
async def test_a_value_cached_by_one_process_is_a_hit_in_another(
    layer: str, settings: Settings, request: pytest.FixtureRequest
) -> None:
    redis_url = ""
    if layer == "redis":
        redis_url = request.getfixturevalue("redis_url")
    key = f"greeting:{uuid.uuid4().hex}"
    await asyncio.to_thread(
        fill_from_another_process,
        settings.sqlite_path,
        redis_url,
        key,
        "from the other process",
    )

    pool = get_pool(replace(settings, redis_url=redis_url or None))

    async def must_not_run() -> str:
        raise AssertionError("the other process's value should have been found")

    try:
        assert await pool.cache.cached_async_call(key, must_not_run) == "from the other process"
        assert pool.cache.stats()["hits_shared"] == 1
        await pool.cache.invalidate(key)
        with pytest.raises(AssertionError):
            await pool.cache.cached_async_call(key, must_not_run)
        # the named layer itself answered: its client made the reads and the delete
        shared = pool.stats().resources["redis" if layer == "redis" else "sqlite-cache"]
        assert shared.counts.successes >= 3
    finally:
        await pool.aclose()
