"""Stores that survive their own failover, on real servers from Debian's packages broken
for real: PostgreSQL with a streaming replica (recall from the replica, and from the primary
when the replica is down, lagging, or behind this process's own writes; a primary lost
mid-stream of saves), and Redis behind three sentinels (the master lost mid-stream of
greeting lookups)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace

import asyncpg
import pytest

from pool import ResourceStats, get_pool
from testbed.openai_server import OpenAIServer
from testbed.postgres import PostgresServer, ServiceMissingError
from testbed.redis_sentinel import MASTER_NAME, RedisSentinelCluster
from testbed.waiting import wait_until
from tests.support.services import migrate, missing
from tools.conversation import greeting_for
from tools.memory import Memory, MemoryService, open_memory_service
from tools.memory.stores.postgres import PostgresStore
from tools.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary with the migration applied, and a streaming replica of it. Replication is
    synchronous: with asynchronous replication PostgreSQL itself may lose the last commits
    it acknowledged before a crash, whatever the client does."""
    durable = {"synchronous_commit": "on", "fsync": "on"}
    try:
        primary = PostgresServer(options=durable).start()
    except ServiceMissingError as exc:
        missing(str(exc))
    replica: PostgresServer | None = None
    try:
        asyncio.run(migrate(primary.dsn))
        replica = PostgresServer.replica_of(primary).start()
        asyncio.run(synchronous_replication(primary))
        yield primary, replica
    finally:
        if replica is not None:
            replica.remove()
        primary.remove()


async def synchronous_replication(primary: PostgresServer) -> None:
    """From now on a commit returns once the replica has it (set after the replica exists:
    before, every commit would wait for it)."""
    conn = await asyncpg.connect(primary.dsn)
    try:
        await conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def caught_up(primary: PostgresServer, replica: PostgresServer) -> None:
    async with asyncpg.create_pool(primary.dsn, min_size=1, max_size=1) as p:
        # the insert position: with synchronous_commit=off the write position lags behind it
        target = await p.fetchval("SELECT pg_current_wal_insert_lsn()")
    async with asyncpg.create_pool(replica.dsn, min_size=1, max_size=1) as r:
        for _ in range(200):
            if await r.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target):
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the replica did not catch up within 10 s")


async def remember(server: PostgresServer, user: str, key: str, value: str) -> None:
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(
            "INSERT INTO memories (user_id, category, key, value) VALUES ($1, 'FACT', $2, $3)",
            user,
            key,
            value,
        )
    finally:
        await conn.close()


def replica_stats(memory: MemoryService) -> ResourceStats:
    return memory.pool.stats().resources["postgres.replica"]


async def test_recall_reads_the_replica_and_falls_back_to_the_primary(
    cluster: tuple[PostgresServer, PostgresServer], settings: Settings
) -> None:
    primary, replica = cluster
    configured = replace(
        settings,
        memory_backend="postgres",
        database_url=primary.dsn,
        database_read_url=replica.dsn,
        memory_replica_max_lag_s=0.5,
    )
    # another process (a past session) wrote ada's memories
    await remember(primary, "ada", "city", "Turin")
    await caught_up(primary, replica)

    reader_pool = get_pool(configured)
    reader = await open_memory_service(reader_pool, configured)
    try:
        assert [m.value for m in await reader.recall("ada")] == ["Turin"]
        assert replica_stats(reader).counts.requests >= 1  # the lag check, then the recall

        # replay paused: the replica falls behind, and past the lag limit the primary answers
        async with asyncpg.create_pool(replica.dsn, min_size=1, max_size=1) as r:
            await r.execute("SELECT pg_wal_replay_pause()")
            await remember(primary, "ada", "pet", "a cat")
            await asyncio.sleep(1.2)  # past the 0.5 s limit, and the 1 s lag reading
            assert {m.key for m in await reader.recall("ada")} == {"city", "pet"}

            # read-your-writes: whoever wrote reads the primary, however fresh the replica
            await reader.save("bob", "FACT", "city", "Oslo")
            assert [m.value for m in await reader.recall("bob")] == ["Oslo"]
            await r.execute("SELECT pg_wal_replay_resume()")

        # the replica is gone: recall still answers, from the primary
        replica.stop()
        await asyncio.sleep(1.1)  # the last lag reading (fresh) expires
        started = time.perf_counter()
        found = await reader.recall("ada")
        took = time.perf_counter() - started
        assert {m.key for m in found} == {"city", "pet"}
        assert took < 2.0, took  # a refused connection, then the primary: no hang
        assert replica_stats(reader).counts.failures >= 1
    finally:
        await reader.aclose()
        await reader_pool.aclose()


async def test_a_primary_lost_during_500_saves_loses_nothing(
    cluster: tuple[PostgresServer, PostgresServer], settings: Settings
) -> None:
    primary, replica = cluster
    hosts = f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{replica.port}/postgres"
    settings = replace(settings, memory_backend="postgres", database_url=hosts)
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    assert memory.outbox is not None
    outcomes: list[str] = []
    lost_at = promoted_at = 0.0
    try:
        for i in range(500):
            if i == 150:
                primary.kill()
                lost_at = time.perf_counter()
            if i == 200:
                async with asyncpg.create_pool(replica.dsn, min_size=1, max_size=1) as r:
                    assert await r.fetchval("SELECT pg_promote(true, 30)")
                promoted_at = time.perf_counter()
            # 400 distinct memories, and one key rewritten 100 times in order
            if i % 5 == 4:
                outcomes.append(await memory.save("rita", "FACT", "counter", f"{i:03d}"))
            else:
                outcomes.append(await memory.save("rita", "FACT", f"k{i:03d}", f"v{i}"))
        outbox = memory.outbox

        async def drained() -> bool:
            return await outbox.pending() == 0

        await wait_until(drained, 60, what="the outbox to drain", every_s=0.2)
        store = await memory.store()
        assert isinstance(store, PostgresStore)
        stats = pool.stats().resources["postgres"]
    finally:
        await memory.aclose()
        await pool.aclose()

    assert set(outcomes) <= {"saved", "queued"} and "queued" in outcomes
    assert lost_at < promoted_at
    async with asyncpg.create_pool(replica.dsn, min_size=1, max_size=1) as new_primary:
        rows = await new_primary.fetch("SELECT key, value FROM memories WHERE user_id = 'rita'")
    found = {row["key"]: row["value"] for row in rows}
    assert len(found) == 401  # 400 keys + the counter: every acknowledged write, once
    assert all(found[f"k{i:03d}"] == f"v{i}" for i in range(500) if i % 5 != 4)
    assert found["counter"] == "499"  # the newest of its 100 writes, whatever the replay order
    assert stats.counts.failures >= 1


@pytest.fixture
def sentinel_cluster() -> Iterator[RedisSentinelCluster]:
    try:
        cluster = RedisSentinelCluster()
    except ServiceMissingError as exc:
        missing(str(exc))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


async def test_the_greeting_cache_rides_a_redis_sentinel_failover(
    sentinel_cluster: RedisSentinelCluster, settings: Settings, server: OpenAIServer
) -> None:
    """1000 greeting lookups, the master killed at the 300th: no lookup fails, and the
    shared layer serves again from the promoted replica."""
    pool = get_pool(
        replace(
            settings,
            redis_sentinels=sentinel_cluster.sentinels,
            redis_sentinel_master=MASTER_NAME,
            cache_max_entries=1,  # nearly every lookup reaches the shared layer
        )
    )
    now = time.time()
    users = [f"user-{i}" for i in range(20)]
    memories = {u: [Memory(u, "FACT", "name", u.title(), now, now)] for u in users}
    first_master = sentinel_cluster.master_address()
    killed_at = served_again_at = 0.0
    shared_hits_at_kill = 0
    try:
        for i in range(1000):
            if i == 300:
                sentinel_cluster.kill_master()
                killed_at = time.perf_counter()
                shared_hits_at_kill = pool.cache.hits_shared
            user = users[i % len(users)]
            greeting = await greeting_for(
                pool, user, memories[user], model=settings.llm_model
            )  # never raises
            assert greeting
            if killed_at and not served_again_at and pool.cache.hits_shared > shared_hits_at_kill:
                served_again_at = time.perf_counter()
            await asyncio.sleep(0.015)
        deadline = time.monotonic() + 30
        while not served_again_at and time.monotonic() < deadline:
            await greeting_for(pool, users[0], memories[users[0]], model=settings.llm_model)
            if pool.cache.hits_shared > shared_hits_at_kill:
                served_again_at = time.perf_counter()
            await asyncio.sleep(0.05)
        redis_stats = pool.stats().resources["redis"]
    finally:
        await pool.aclose()

    assert sentinel_cluster.master_address() != first_master  # the replica was promoted
    assert served_again_at, "the shared layer never served again after the failover"
    print(f"redis master lost → first shared cache hit: {served_again_at - killed_at:.2f} s")
    assert redis_stats.counts.failures >= 1  # the outage shows in its health
