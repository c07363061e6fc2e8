"""A refusal sets aside only the refused write, on every backend; set-aside writes are
visible (stats, Prometheus, `python agent.py memory outbox`) and replayable; an outage is
logged once, summarised, and ended with the count replayed."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import asyncpg
import pytest
from prometheus_client import REGISTRY

from pool import RetryPolicy, get_pool
from testbed.postgrest import PostgrestServer
from testbed.waiting import wait_until
from tests.support.console import memory_command
from tests.support.services import supabase_settings, truncate
from tools.memory import MemoryService, Outbox, Write, memory_store
from tools.memory.stores.sqlite import SqliteStore
from tools.pool_tools import stats_report
from tools.settings import Settings

# a memory's text: the refusal of it is told by its code and message, never by the text
FORBIDDEN = "my private note"

SQLITE_RULE = (
    f"CREATE TRIGGER refuse_forbidden BEFORE INSERT ON memories WHEN new.value = '{FORBIDDEN}' "
    "BEGIN SELECT RAISE(ABORT, 'this value is refused'); END"
)
PG_RULE = f"ALTER TABLE memories ADD CONSTRAINT refuse_forbidden CHECK (value <> '{FORBIDDEN}')"


async def refusal_rule(
    memory: MemoryService, settings: Settings, pg_dsn: str | None
) -> Callable[[], Awaitable[None]]:
    """Make the store refuse one value, as a constraint added after the write was queued
    would; returns the fix."""
    store = await memory.store()
    if isinstance(store, SqliteStore):
        await store.db.execute(SQLITE_RULE)
        await store.db.commit()

        async def fix_sqlite() -> None:
            await store.db.execute("DROP TRIGGER refuse_forbidden")
            await store.db.commit()

        return fix_sqlite
    assert pg_dsn is not None
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(PG_RULE)

    async def fix_pg() -> None:
        await conn.execute("ALTER TABLE memories DROP CONSTRAINT refuse_forbidden")
        await conn.close()

    return fix_pg


def gauge(state: str) -> float | None:
    return REGISTRY.get_sample_value("agent_memory_outbox_writes", {"state": state})


async def test_one_refused_write_is_set_aside_alone_and_replayed_after_the_fix(
    memory: MemoryService,
    backend_settings: Settings,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = backend_settings
    pg_dsn = None if settings.memory_backend == "sqlite" else request.getfixturevalue("pg_dsn")
    outbox = memory.outbox
    assert outbox is not None
    stamp = time.time()
    writes = [Write(f"user-{i % 3}", "FACT", f"k{i}", f"v{i}", stamp + i) for i in range(30)]
    writes[17] = Write("user-2", "FACT", "k17", FORBIDDEN, stamp + 17)
    fix = await refusal_rule(memory, settings, pg_dsn)
    store = await memory.store()
    try:
        await outbox.flush_once()  # whatever was queued before this test
        await outbox.put(writes)
        while await outbox.flush_once():
            pass

        report = await outbox.report()
        assert report.totals() == {"pending": 0, "retrying": 0, "set_aside": 1}
        assert list(report.set_aside) == ["user-2"]
        assert "refused" in report.reasons[0][0] or "violates" in report.reasons[0][0]
        # PostgREST's details quote the failing row: not in the reason, nor in the log
        assert FORBIDDEN not in report.reasons[0][0]
        assert "set aside" in caplog.text and FORBIDDEN not in caplog.text
        for i in range(30):
            found = await memory.get(f"user-{i % 3}", "FACT", f"k{i}")
            assert (found is None) == (i == 17), i
        # a refusal says the store is up: counted apart, the breaker stays closed
        assert store.meter.metrics.counts.refused >= 1
        assert store.meter.breaker.state == "closed"
        stats = await stats_report(memory.pool, outbox)
        assert '"memory_outbox":{"pending":0,"retrying":0,"set_aside":1}' in stats
        assert gauge("set_aside") == 1
    finally:
        await fix()

    assert await outbox.replay_set_aside() == 1
    while await outbox.flush_once():
        pass
    assert (await memory.get("user-2", "FACT", "k17")).value == FORBIDDEN  # type: ignore[union-attr]
    assert (await outbox.totals()) == {"pending": 0, "retrying": 0, "set_aside": 0}
    assert gauge("set_aside") == 0


def agent(args: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MEMORY_BACKEND": "sqlite",
        "MEMORY_SQLITE_PATH": settings.sqlite_path,
        "MEMORY_OUTBOX_PATH": settings.memory_outbox_path,
    }
    return memory_command(args, env)


async def test_the_memory_command_lists_set_aside_writes_and_replays_them(
    settings: Settings,
) -> None:
    pool = get_pool(settings)
    store = await memory_store(pool, settings)
    assert isinstance(store, SqliteStore)

    async def store_for() -> SqliteStore:
        return store

    outbox = await Outbox(settings.memory_outbox_path, store_for).open()
    await store.db.execute(SQLITE_RULE)
    await store.db.commit()
    await outbox.put([Write("ada", "PREFERENCE", "drink", FORBIDDEN, time.time() - 3 * 3600)])
    await outbox.put([Write("ada", "FACT", "city", "Turin", time.time())])
    await outbox.flush_once()
    await store.db.execute("DROP TRIGGER refuse_forbidden")
    await store.db.commit()
    await outbox.close()
    await pool.aclose()

    shown = await asyncio.to_thread(agent, ["outbox"], settings)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].endswith(": 0 pending, 1 set aside")
    assert lines[1].split() == ["set", "aside", "ada:", "1", "writes,", "oldest", "3.0", "h"]
    assert lines[2].startswith("  refused 1x: IntegrityError: this value is refused")
    assert lines[-1] == "Fix the cause, then: python agent.py memory replay"
    assert shown.stderr == ""

    replayed = await asyncio.to_thread(agent, ["replay"], settings)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout.splitlines()[0] == (
        "replayed 1 set-aside writes: 1 writes stored, 0 refused again, "
        "0 still waiting for the store"
    )
    assert (await asyncio.to_thread(agent, ["outbox"], settings)).stdout.splitlines() == [
        f"outbox {settings.memory_outbox_path}: 0 pending, 0 set aside"
    ]
    wrong = await asyncio.to_thread(agent, ["replay", "--deadline", "soon"], settings)
    assert (wrong.returncode, wrong.stdout.strip()) == (
        2,
        "usage: python agent.py memory outbox | memory replay [--deadline SECONDS]",
    )


@pytest.mark.postgres
async def test_an_outage_is_logged_once_summarised_and_ended_with_the_count_replayed(
    postgrest: PostgrestServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    postgrest.reset()
    await truncate(postgrest.dsn)
    # the breaker opens during the outage and lets a trial call through soon after
    settings = replace(supabase_settings(settings, postgrest), breaker_reset_s=0.5)
    pool = get_pool(settings)

    async def store_for() -> object:
        return await memory_store(pool, settings)

    outbox = Outbox(
        settings.memory_outbox_path,
        store_for,  # type: ignore[arg-type]
        backoff=RetryPolicy(base_s=0.02, max_delay_s=0.05, jitter="none"),
        summary_every_s=0.5,
    )
    await outbox.open()
    caplog.set_level(logging.INFO, logger="tools.memory.outage_log")
    postgrest.down = True
    began = time.monotonic()
    outbox.start()
    try:
        for i in range(5):
            await outbox.put([Write("ada", "FACT", f"k{i}", f"v{i}", time.time())])
        await wait_until(lambda: outbox.failed_flushes >= 30, 30, what="30 failed flushes")
        await asyncio.sleep(1.2)  # at least two summaries due
        failures = outbox.failed_flushes
        postgrest.down = False
        await wait_until(lambda: not outbox.outage.active, 30, what="the outage to end")
        assert await outbox.pending() == 0
        # the outage ends for the outbox when the store's breaker lets a write through
        lasted = time.monotonic() - began
    finally:
        await outbox.aclose(deadline_s=2)
        await pool.aclose()

    said = [r for r in caplog.records if r.name == "tools.memory.outage_log"]
    warnings = [r.getMessage() for r in said if r.levelno == logging.WARNING]
    assert failures >= 30
    assert warnings[0].startswith("memory store unreachable (APIError PGRST")
    summaries = warnings[1:]
    most = 1 + lasted / 0.5
    assert 2 <= len(summaries) <= most, warnings
    assert all(
        s.startswith("memory store still unreachable after ") and "; 5 writes wait" in s
        for s in summaries
    )
    ended = [r.getMessage() for r in said if r.levelno == logging.INFO]
    assert len(ended) == 1 and ended[0].endswith("; 5 queued writes replayed"), ended
