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

from pool import get_pool
from tools.conversation import greeting_for
from tools.memory import Memory, open_memory_service
from tools.settings import Settings

from .rig import Rig

ROOT = Path(__file__).resolve().parent.parent


def _greeting_in_a_new_process(rig: Rig, user: str, redis_url: str | None) -> dict[str, Any]:
    config = {
        "base_url": rig.settings.openai_base_url,
        "sqlite": str(rig.workdir / "greetings.db"),
        "redis": redis_url,
        "user": user,
    }
    return in_a_fresh_process("bench.greeting_probe", config)


def in_a_fresh_process(module: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run ``python -m module CONFIG_JSON`` (a new job, as far as the pool knows) and read
    the JSON it prints."""
    result = subprocess.run(
        [sys.executable, "-m", module, json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


async def greeting_cache(
    rig: Rig, hits: int, concurrent: int, redis_url: str | None
) -> dict[str, Any]:
    """Through ``greeting_for`` and the LLM, with requests counted at the server: a miss,
    hits, concurrent misses for one new user, and a second process (a fresh job) that finds
    the greeting in the shared layer, SQLite on one machine and Redis across machines."""
    llm_calls = lambda: rig.server.count("/chat/completions")  # noqa: E731
    figures: dict[str, Any] = {}
    for layer, redis in (("sqlite", None), ("redis", redis_url)):
        if layer == "redis" and redis is None:
            continue
        settings = replace(
            rig.settings, sqlite_path=str(rig.workdir / "greetings.db"), redis_url=redis
        )
        pool = get_pool(settings)
        now = time.time()
        user = f"bench-{layer}-{uuid.uuid4().hex[:6]}"
        memories = [Memory(user, "FACT", "name", "Ada", now, now)]
        try:
            await pool.warm()
            before = llm_calls()
            started = time.perf_counter()
            await greeting_for(pool, user, memories, model=settings.llm_model)
            miss = time.perf_counter() - started
            miss_calls = llm_calls() - before
            before = llm_calls()
            timings = []
            for _ in range(hits):
                started_ns = time.perf_counter_ns()
                await greeting_for(pool, user, memories, model=settings.llm_model)
                timings.append(time.perf_counter_ns() - started_ns)
            hit_calls = llm_calls() - before

            crowd = f"bench-crowd-{uuid.uuid4().hex[:6]}"
            crowd_memories = [Memory(crowd, "FACT", "name", "Ada", now, now)]
            before = llm_calls()
            await asyncio.gather(
                *(
                    greeting_for(pool, crowd, crowd_memories, model=settings.llm_model)
                    for _ in range(concurrent)
                )
            )
            crowd_calls = llm_calls() - before
        finally:
            await pool.aclose()
        before = llm_calls()
        other = await asyncio.to_thread(_greeting_in_a_new_process, rig, user, redis)
        figures[layer] = {
            "miss_ms": round(miss * 1000, 2),
            "miss_llm_calls": miss_calls,
            "hit_p50_us": round(statistics.median(timings) / 1000, 2),
            "hits": hits,
            "hit_llm_calls": hit_calls,
            "concurrent_misses": concurrent,
            "concurrent_llm_calls": crowd_calls,
            "new_process_ms": other["ms"],
            "new_process_from_shared_layer": other["hits_shared"] == 1 and other["misses"] == 0,
            "new_process_llm_calls": llm_calls() - before,
        }
    return figures


async def _memory_batch(settings: Settings, backend: str, n: int) -> dict[str, Any]:
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
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
    config = {"base_url": rig.direct.openai_base_url, "sqlite": str(rig.workdir / "rss.db")}
    return float(in_a_fresh_process("bench.rss", config)["pool_rss_mb"])
