"""An outage is retried and waits in the outbox; only a refusal is set aside. Classified
by the codes PostgreSQL and PostgREST really send."""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest

from pool import get_pool
from tests.support.services import truncate
from tools.memory import open_memory_service
from tools.memory.stores.outage import is_outage_code
from tools.settings import Settings


@pytest.mark.parametrize(
    "code",
    [
        "57P01",  # admin shutdown
        "57P02",  # crash shutdown
        "57P03",  # cannot connect now
        "40001",  # serialization failure
        "40P01",  # deadlock
        "25006",  # read-only transaction, after a failover
        "53300",  # too many connections
        "53100",  # disk full
        "57014",  # statement timeout
        "08006",  # connection failure
        "PGRST000",  # PostgREST could not connect to the database
        "PGRST001",
        "PGRST002",
        "PGRST003",  # PostgREST's pool timed out
        "503",
        "504",
    ],
)
def test_codes_that_mean_the_service_is_in_trouble_are_outages(code: str) -> None:
    assert is_outage_code(code)


@pytest.mark.parametrize("code", ["23505", "22001", "23514", "42501", "PGRST116", "400", None])
def test_codes_that_refuse_the_write_are_not(code: str | None) -> None:
    assert not is_outage_code(code)


async def test_a_read_only_primary_is_an_outage_and_the_write_waits_for_it(
    pg_dsn: str, pg_admin_dsn: str, settings: Settings
) -> None:
    """As after a failover, when the old primary comes back as a replica: 25006."""
    await truncate(pg_dsn)
    name = pg_dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(pg_admin_dsn)
    settings = replace(settings, memory_backend="postgres", database_url=pg_dsn)
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        store = await memory.store()
        await store.pg.expire_connections()  # type: ignore[attr-defined]
        assert await memory.save("rita", "FACT", "city", "Rome") == "queued"
        assert memory.outbox is not None and await memory.outbox.pending() == 1
        assert memory.outbox.rejected == 0  # an outage is never set aside

        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
        await store.pg.expire_connections()  # type: ignore[attr-defined]
        await memory.outbox.flush_once()
        assert (await memory.get("rita", "FACT", "city")).value == "Rome"  # type: ignore[union-attr]
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await admin.close()
        await memory.aclose()
        await pool.aclose()
