"""Figures that stay on this machine: cache, memory batches, the pool's memory."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from pool import Settings, get_pool
from tools.greeting import greeting_for
from tools.memory import Memory
from tools.stores import open_memory_service

from .rig import Rig

ROOT = Path(__file__).resolve().parent.parent


async def greeting_cache(rig: Rig, hits: int, concurrent: int) -> dict[str, Any]:
    pool = get_pool(rig.settings)
    now = time.time()
    memories = [Memory("bench-user", "FACT", "name", "Ada", now, now)]
    try:
        await pool.warm()
        started = time.perf_counter()
        await greeting_for(pool, "bench-user", memories)
        miss = time.perf_counter() - started
        timings = []
        for _ in range(hits):
            started = time.perf_counter_ns()
            await greeting_for(pool, "bench-user", memories)
            timings.append(time.perf_counter_ns() - started)

        calls = 0

        async def upstream() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return "hello"

        key = f"single-flight:{uuid.uuid4().hex}"
        await asyncio.gather(
            *(pool.cache.cached_async_call(key, upstream) for _ in range(concurrent))
        )
    finally:
        await pool.aclose()
    return {
        "miss_ms": round(miss * 1000, 2),
        "hit_p50_us": round(statistics.median(timings) / 1000, 2),
        "concurrent_misses": concurrent,
        "upstream_calls": calls,
    }


async def _memory_batch(settings: Settings, backend: str, n: int) -> dict[str, Any]:
    pool = get_pool(settings)
    memory = await open_memory_service(pool)
    try:
        await memory.recall("warm-up")  # the store is open before timing
        started = time.perf_counter()
        for i in range(n):
            await memory.save("bench-seq", "FACT", f"k{i}", f"value {i}")
        sequential = time.perf_counter() - started
        ops = [
            {"type": "save", "category": "FACT", "key": f"k{i}", "value": f"v{i}"} for i in range(n)
        ]
        started = time.perf_counter()
        results = await memory.batch("bench-batch", ops)
        batched = time.perf_counter() - started
        assert all(r.ok for r in results)
    finally:
        await memory.aclose()
        await pool.aclose()
    return {
        "backend": backend,
        "n": n,
        "sequential_ms": round(sequential * 1000, 2),
        "batched_ms": round(batched * 1000, 2),
        "speedup": round(sequential / batched, 1),
    }


async def memory_batch(
    rig: Rig, n: int, pg_admin_dsn: str
) -> tuple[list[dict[str, Any]], str | None]:
    rows = [await _memory_batch(rig.direct, "sqlite", n)]
    name = f"agent_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(pg_admin_dsn, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return rows, f"PostgreSQL skipped: {type(exc).__name__} at {pg_admin_dsn.split('@')[-1]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = pg_admin_dsn.rsplit("/", 1)[0] + f"/{name}"
        settings = replace(rig.direct, memory_backend="postgres", database_url=dsn)
        rows.append(await _memory_batch(settings, "postgres", n))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return rows, None


def pool_rss_mb(rig: Rig) -> float:
    """Resident memory a warmed pool and its clients add, measured in a fresh process."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.rss",
            json.dumps(
                {"base_url": rig.direct.openai_base_url, "sqlite": str(rig.workdir / "rss.db")}
            ),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return float(json.loads(result.stdout)["pool_rss_mb"])
