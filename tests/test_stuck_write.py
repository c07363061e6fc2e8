"""A queued write that always fails as an outage (a locked row: the statement times out,
57014) blocks no write behind it and is set aside after a bounded number of failures;
a store that takes no writes at all blames none of them. On real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from pool import CircuitOpenError, get_pool
from tests.support.services import truncate
from tools.memory import MAX_FAILURES, MemoryService, Write, open_memory_service
from tools.memory.cli import describe
from tools.settings import Settings

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_memory(pg_dsn: str, settings: Settings) -> AsyncIterator[MemoryService]:
    await truncate(pg_dsn)
    # asyncpg passes unknown DSN parameters to the server: a locked row now fails in 300 ms
    dsn = f"{pg_dsn}?statement_timeout=300"
    settings = replace(settings, memory_backend="postgres", database_url=dsn)
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    yield memory
    await memory.aclose(deadline_s=1)
    await pool.aclose()


async def stored(dsn: str) -> dict[tuple[str, str], str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT user_id, key, value FROM memories")
    finally:
        await conn.close()
    return {(r["user_id"], r["key"]): r["value"] for r in rows}


async def flush_until_quiet(memory: MemoryService) -> None:
    """Flush until a flush resolves nothing: empty, or only the stuck write is left."""
    assert memory.outbox is not None
    for _ in range(20):
        try:
            if not await memory.outbox.flush_once():
                return
        except asyncpg.PostgresError:  # nothing stored: only the stuck write was left
            return


async def drain(memory: MemoryService, timeout_s: float = 20.0) -> None:
    """Flush until empty, through the breaker's open spell."""
    assert memory.outbox is not None
    deadline = time.monotonic() + timeout_s
    while await memory.outbox.pending() and time.monotonic() < deadline:
        try:
            await memory.outbox.flush_once()
        except (asyncpg.PostgresError, CircuitOpenError):
            await asyncio.sleep(0.2)


async def test_a_locked_row_holds_back_no_write_and_is_set_aside_after_its_failures(
    pg_memory: MemoryService, pg_dsn: str
) -> None:
    outbox = pg_memory.outbox
    assert outbox is not None
    assert await pg_memory.save("poe", "FACT", "city", "Boston") == "saved"
    locker = await asyncpg.connect(pg_dsn)
    locked = locker.transaction()
    await locked.start()
    try:
        await locker.execute(
            "SELECT 1 FROM memories WHERE user_id = 'poe' AND key = 'city' FOR UPDATE"
        )
        stamp = time.time()
        writes = [Write(f"user-{i % 4}", "FACT", f"k{i}", f"v{i}", stamp) for i in range(20)]
        writes[7] = Write("poe", "FACT", "city", "Baltimore", stamp)
        await outbox.put(writes)
        await flush_until_quiet(pg_memory)

        found = await stored(pg_dsn)
        good = {(w.user_id, w.key): w.value for i, w in enumerate(writes) if i != 7}
        assert {k: v for k, v in found.items() if k in good} == good
        assert found[("poe", "city")] == "Boston"
        totals = await outbox.totals()
        assert totals == {"pending": 1, "retrying": 1, "set_aside": 0}
        shown = describe(await outbox.report(), outbox.path)
        assert "1 pending (1 failing on their own)" in shown
        assert "57014" in shown or "statement timeout" in shown, shown

        # each later flush stores fresh writes beside it: the stuck one counts a failure
        # each time, and is set aside at the bound, with its reason
        for turn in range(MAX_FAILURES):
            await outbox.put([Write("user-0", "CONTEXT", f"later{turn}", "fine", time.time())])
            await flush_until_quiet(pg_memory)
        totals = await outbox.totals()
        assert totals == {"pending": 0, "retrying": 0, "set_aside": 1}
        report = await outbox.report()
        assert list(report.set_aside) == ["poe"]
        assert report.reasons[0][0].startswith(f"failed {MAX_FAILURES} times while other writes")
        found = await stored(pg_dsn)
        assert all(found[("user-0", f"later{turn}")] == "fine" for turn in range(MAX_FAILURES))
    finally:
        await locked.rollback()
        await locker.close()

    # the lock is gone: a replay stores it
    assert await outbox.replay_set_aside() == 1
    await flush_until_quiet(pg_memory)
    assert (await stored(pg_dsn))[("poe", "city")] == "Baltimore"


async def test_a_store_that_takes_no_writes_blames_none_of_them(
    pg_memory: MemoryService, pg_dsn: str, pg_admin_dsn: str
) -> None:
    """A read-only primary (25006) answers its pings but stores nothing: every write waits,
    none counts a failure, none is set aside, however many flushes fail."""
    outbox = pg_memory.outbox
    assert outbox is not None
    name = pg_dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(pg_admin_dsn)
    store = await pg_memory.store()
    try:
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        await store.pg.expire_connections()  # type: ignore[attr-defined]
        stamp = time.time()
        await outbox.put([Write("rita", "FACT", f"k{i}", f"v{i}", stamp) for i in range(20)])
        for _ in range(2 * MAX_FAILURES):
            # the breaker opens on the way: then the flush fails without a request
            with pytest.raises((asyncpg.ReadOnlySQLTransactionError, CircuitOpenError)):
                await outbox.flush_once()
            await asyncio.sleep(0.1)
        assert await outbox.totals() == {"pending": 20, "retrying": 0, "set_aside": 0}
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await admin.close()
    await store.pg.expire_connections()  # type: ignore[attr-defined]
    await drain(pg_memory)
    assert len(await stored(pg_dsn)) == 20
    assert await outbox.totals() == {"pending": 0, "retrying": 0, "set_aside": 0}
