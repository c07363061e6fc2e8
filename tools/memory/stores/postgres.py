"""PostgreSQL through asyncpg. Works through Supabase's transaction-mode pooler when
``PG_STATEMENT_CACHE_SIZE=0`` (the pooler cannot keep prepared statements).

Failover: ``DATABASE_URL`` may list several hosts; every connection asks for a read-write
session, so writes reach whichever host is the primary now. A failover shows as outage
errors (a lost connection, ``25006`` read-only): the writes wait in the outbox, the pool's
connections are expired so the next ones find the new primary, and the outbox replays.

Replicas: with ``DATABASE_READ_URL`` the recall at session start reads from a replica when
it is up and no more than ``max_lag_s`` behind, else from the primary; a user this process
wrote for is read from the primary (read-your-writes). The replica has its own breaker and
health (``postgres.replica``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg

from pool import Meter

from ..model import Category, Memory, Write, newest_per_key
from .outage import is_outage_code

MIGRATIONS = Path(__file__).resolve().parents[3] / "supabase" / "migrations"
# present once the newest migration has run
NEWEST_OBJECT = "SELECT to_regprocedure('public.memory_tombstones_forget()')"

# the ordering and tombstone rules are enforced by the tables' triggers (see the migrations)
UPSERT = """
INSERT INTO public.memories (user_id, category, key, value, created_at, updated_at)
SELECT u, c, k, v, to_timestamp(t), to_timestamp(t)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[]) AS w(u, c, k, v, t)
ON CONFLICT (user_id, category, key)
DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
"""

# writing the tombstone deletes the memory it covers (the tombstone's trigger)
DELETE = """
INSERT INTO public.memory_tombstones (user_id, category, key, deleted_at)
SELECT u, c, k, to_timestamp(t)
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS d(u, c, k, t)
ON CONFLICT (user_id, category, key) DO UPDATE SET deleted_at = excluded.deleted_at
"""

# seconds the replica is behind; 0 when it has replayed all it received
REPLICA_LAG = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
END
"""
# how long a replica's lag reading is trusted
LAG_CHECK_S = 1.0

T = TypeVar("T")

COLUMNS = "user_id, category, key, value, created_at, updated_at"

GET_MANY = f"""
SELECT {COLUMNS} FROM public.memories
WHERE user_id = $1 AND (category, key) IN (SELECT * FROM unnest($2::text[], $3::text[]))
"""

RECALL = f"""
SELECT {COLUMNS} FROM public.memories
WHERE user_id = $1 AND ($2::text IS NULL OR category = $2)
ORDER BY updated_at DESC LIMIT $3
"""


def _memory(row: asyncpg.Record) -> Memory:
    created: datetime = row["created_at"]
    updated: datetime = row["updated_at"]
    return Memory(
        row["user_id"],
        row["category"],
        row["key"],
        row["value"],
        created.timestamp(),
        updated.timestamp(),
    )


def _several_hosts(dsn: str) -> bool:
    return "," in urlsplit(dsn).netloc.rsplit("@", 1)[-1]


async def apply_migration(conn: asyncpg.Connection) -> None:
    """Run every migration in order; each is idempotent. Workers starting together on an
    empty database take turns on a lock rather than racing on the same DDL."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('memories-migration'))")
        for path in sorted(MIGRATIONS.glob("*.sql")):
            await conn.execute(path.read_text())


class PostgresStore:
    name = "postgres"

    def __init__(
        self,
        pg: asyncpg.Pool,
        meter: Meter,
        replica: asyncpg.Pool | None = None,
        *,
        max_lag_s: float = 5.0,
    ) -> None:
        self.pg = pg
        self.meter = meter
        self.replica = replica
        self.max_lag_s = max_lag_s
        self.replica_meter = meter.capability("replica") if replica is not None else None
        self._wrote: set[str] = set()  # users written by this process: read the primary
        self._lag_checked_at = 0.0
        self._replica_fresh = False

    @classmethod
    async def open(
        cls,
        dsn: str,
        meter: Meter,
        *,
        statement_cache_size: int = 100,
        read_dsn: str | None = None,
        max_lag_s: float = 5.0,
    ) -> PostgresStore:
        pg = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=10,
            statement_cache_size=statement_cache_size,
            command_timeout=10,
            timeout=5,
            # with several hosts, the one that takes writes: the primary (one host: whatever
            # the DSN asks, so a read-only primary still opens and its writes queue)
            target_session_attrs="read-write" if _several_hosts(dsn) else None,
        )
        try:
            async with pg.acquire() as conn:
                if await conn.fetchval(NEWEST_OBJECT) is None:
                    await apply_migration(conn)
        except BaseException:
            await pg.close()
            raise
        replica = None
        if read_dsn is not None:
            # no connection yet: a replica that is down must not stop the store opening
            replica = await asyncpg.create_pool(
                read_dsn,
                min_size=0,
                max_size=5,
                statement_cache_size=statement_cache_size,
                command_timeout=5,
                timeout=2,
            )
        return cls(pg, meter, replica, max_lag_s=max_lag_s)

    async def apply(self, writes: Sequence[Write]) -> None:
        writes = newest_per_key(writes)
        saves = [w for w in writes if w.value is not None]
        deletes = [w for w in writes if w.value is None]
        self._wrote.update(w.user_id for w in writes)
        try:
            await self._apply(saves, deletes)
        except Exception as exc:
            if self.is_outage(exc):
                # after a failover, connections to the old primary are useless: the next
                # ones look for the read-write host again
                await self.pg.expire_connections()
            raise

    async def _apply(self, saves: list[Write], deletes: list[Write]) -> None:
        async with self.meter.guard(self.is_refusal), self.pg.acquire() as conn, conn.transaction():
            if saves:
                await conn.execute(
                    UPSERT,
                    [w.user_id for w in saves],
                    [w.category for w in saves],
                    [w.key for w in saves],
                    [w.value for w in saves],
                    [w.written_at for w in saves],
                )
            if deletes:
                await conn.execute(
                    DELETE,
                    [w.user_id for w in deletes],
                    [w.category for w in deletes],
                    [w.key for w in deletes],
                    [w.written_at for w in deletes],
                )

    async def get_many(self, user_id: str, keys: Sequence[tuple[Category, str]]) -> list[Memory]:
        if not keys:
            return []
        categories, names = [c for c, _ in keys], [k for _, k in keys]
        rows = await self._read(user_id, lambda pg: pg.fetch(GET_MANY, user_id, categories, names))
        return [_memory(row) for row in rows]

    async def recall(
        self, user_id: str, category: Category | None = None, limit: int = 200
    ) -> list[Memory]:
        rows = await self._read(user_id, lambda pg: pg.fetch(RECALL, user_id, category, limit))
        return [_memory(row) for row in rows]

    async def _read(self, user_id: str, query: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """From the replica when it may serve this user, else (or when it fails) the primary."""
        if await self._replica_may_serve(user_id):
            assert self.replica is not None and self.replica_meter is not None
            try:
                async with self.replica_meter.guard(self.is_refusal):
                    return await query(self.replica)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._replica_fresh = False  # until the next check says otherwise
        async with self.meter.guard(self.is_refusal):
            return await query(self.pg)

    async def _replica_may_serve(self, user_id: str) -> bool:
        if self.replica is None or self.replica_meter is None or user_id in self._wrote:
            return False
        if time.monotonic() - self._lag_checked_at < LAG_CHECK_S:
            return self._replica_fresh
        self._lag_checked_at = time.monotonic()
        try:
            async with self.replica_meter.guard(self.is_refusal):
                lag = await self.replica.fetchval(REPLICA_LAG, timeout=1.0)
            self._replica_fresh = float(lag) <= self.max_lag_s
        except asyncio.CancelledError:
            raise
        except Exception:
            self._replica_fresh = False
        return self._replica_fresh

    def is_outage(self, exc: BaseException) -> bool:
        if isinstance(
            exc,
            OSError
            | TimeoutError
            | asyncpg.InterfaceError  # the connection was lost underneath us
            | asyncpg.PostgresConnectionError
            # every host answered, none is the primary: a failover in progress
            | asyncpg.TargetServerAttributeNotMatched,
        ):
            return True
        return isinstance(exc, asyncpg.PostgresError) and is_outage_code(exc.sqlstate)

    def is_refusal(self, exc: BaseException) -> bool:
        """The store answered and refused this request; it is up."""
        return isinstance(exc, asyncpg.PostgresError) and not self.is_outage(exc)

    async def ping(self) -> None:
        await self.pg.fetchval("SELECT 1")

    async def aclose(self) -> None:
        await self.pg.close()
        if self.replica is not None:
            await self.replica.close()
