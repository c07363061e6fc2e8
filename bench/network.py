"""Figures that cross the (latency-injected) network."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import replace
from typing import Any

import openai

from pool import ConnectionPool, get_pool
from tools.conversation import parallel_ai_calls

from .ai_endpoint import AIEndpoint
from .rig import Rig

ASK: Any = [{"role": "user", "content": "hi"}]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def chat(client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=8)


async def pooled_vs_fresh(rig: Rig, n: int) -> dict[str, float]:
    """One request with a brand-new client (TCP + TLS + request) against the pool's."""
    fresh: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        client = openai.AsyncOpenAI(base_url=rig.base_url, api_key="sk-bench", max_retries=0)
        try:
            await chat(client)
            fresh.append(time.perf_counter() - started)
        finally:
            await client.close()

    pool = get_pool(rig.settings)
    try:
        await chat(await pool.openai())  # the pool's connection exists, as after warm()
        pooled: list[float] = []
        for _ in range(n):
            started = time.perf_counter()
            await chat(await pool.openai())
            pooled.append(time.perf_counter() - started)
    finally:
        await pool.aclose()
    fresh_p50, pooled_p50 = statistics.median(fresh), statistics.median(pooled)
    return {
        "fresh_p50_ms": ms(fresh_p50),
        "pooled_p50_ms": ms(pooled_p50),
        "ratio": round(pooled_p50 / fresh_p50, 3),
    }


async def warm_first_request(rig: Rig, n: int) -> dict[str, float]:
    """A job's first request: on a cold pool, and after pool.warm() ran during room connect."""

    async def first_request(warm: bool) -> float:
        pool = get_pool(rig.settings)
        try:
            if warm:
                await pool.warm()
            started = time.perf_counter()
            await chat(await pool.openai())
            return time.perf_counter() - started
        finally:
            await pool.aclose()

    cold = [await first_request(False) for _ in range(n)]
    warm = [await first_request(True) for _ in range(n)]
    cold_ms, warm_ms = statistics.median(cold), statistics.median(warm)
    return {"cold_ms": ms(cold_ms), "warm_ms": ms(warm_ms), "ratio": round(warm_ms / cold_ms, 3)}


async def parallel(
    rig: Rig, sizes: list[int], call_ms: float, *, http2: bool = False
) -> list[dict[str, Any]]:
    """n AI calls of ``call_ms`` each: one after another, then with parallel_ai_calls.

    The provider (server and proxy) runs in a process of its own, so its TLS and JSON work
    is not serialised on the client's event loop: the figure measures the pool. With
    ``http2`` the provider speaks HTTP/2, as OpenAI's API does, and the client too."""
    endpoint = await asyncio.to_thread(
        AIEndpoint.start,
        rig.rtt_ms,
        {"/chat/completions": call_ms / 1000},
        identity=rig.identity,
        ca_file=rig.ca_file,
        http2=http2,
    )
    settings = replace(
        rig.settings, openai_base_url=endpoint.url, openai_http2="true" if http2 else "false"
    )
    pool = get_pool(settings)
    rows = []
    try:
        client = await pool.openai()
        for n in sizes:
            calls = [lambda: chat(client)] * n
            before = endpoint.counters()["connections"]
            await parallel_ai_calls(*calls, timeout=60, limit=n)  # open n connections first
            started = time.perf_counter()
            for call in calls:
                await call()
            sequential = time.perf_counter() - started
            started = time.perf_counter()
            results = await parallel_ai_calls(*calls, timeout=60, limit=n)
            concurrent = time.perf_counter() - started
            assert all(r.ok for r in results), [r.error for r in results if not r.ok]
            rows.append(
                {
                    "n": n,
                    "http2": http2,
                    # TCP connections opened for the whole figure: n over HTTP/1.1, one over h2
                    "connections": endpoint.counters()["connections"] - before,
                    "call_ms": call_ms,
                    "sequential_ms": ms(sequential),
                    "parallel_ms": ms(concurrent),
                    "speedup": round(sequential / concurrent, 2),
                }
            )
    finally:
        await pool.aclose()
        await asyncio.to_thread(endpoint.stop)
    return rows


async def connection_reuse(rig: Rig, requests: int) -> dict[str, int]:
    """TCP connections the server accepted for ``requests`` sequential requests."""
    pool = get_pool(replace(rig.direct))
    before = rig.server.connections
    try:
        client = await pool.openai()
        for _ in range(requests):
            await chat(client)
    finally:
        await pool.aclose()
    return {"requests": requests, "connections_opened": rig.server.connections - before}


async def pool_overhead(rig: Rig, n: int) -> dict[str, float]:
    """What the pool itself costs: handing out a cached client, and a stats() snapshot."""
    pool: ConnectionPool = get_pool(rig.direct)
    try:
        await pool.warm()
        acquire = []
        for _ in range(n):
            started = time.perf_counter_ns()
            await pool.openai()
            acquire.append(time.perf_counter_ns() - started)
        stats = []
        for _ in range(max(n // 10, 10)):
            started = time.perf_counter_ns()
            pool.stats()
            stats.append(time.perf_counter_ns() - started)
    finally:
        await pool.aclose()
    return {
        "acquire_p50_us": round(statistics.median(acquire) / 1000, 2),
        "stats_p50_us": round(statistics.median(stats) / 1000, 2),
    }


def run(coro: Any) -> Any:
    return asyncio.run(coro)
