"""PostgreSQL through asyncpg. Works through Supabase's transaction-mode pooler when
``PG_STATEMENT_CACHE_SIZE=0`` (the pooler cannot keep prepared statements)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg

from pool import Meter

from ..model import Category, Memory, Write, newest_per_key
from .outage import is_outage_code

MIGRATIONS = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
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


async def apply_migration(conn: asyncpg.Connection) -> None:
    """Run every migration in order; each is idempotent. Workers starting together on an
    empty database take turns on a lock rather than racing on the same DDL."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('memories-migration'))")
        for path in sorted(MIGRATIONS.glob("*.sql")):
            await conn.execute(path.read_text())


class PostgresStore:
    name = "postgres"

    def __init__(self, pg: asyncpg.Pool, meter: Meter) -> None:
        self.pg = pg
        self.meter = meter

    @classmethod
    async def open(
        cls, dsn: str, meter: Meter, *, statement_cache_size: int = 100
    ) -> PostgresStore:
        pg = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=10,
            statement_cache_size=statement_cache_size,
            command_timeout=10,
            timeout=5,
        )
        try:
            async with pg.acquire() as conn:
                if await conn.fetchval(NEWEST_OBJECT) is None:
                    await apply_migration(conn)
        except BaseException:
            await pg.close()
            raise
        return cls(pg, meter)

    async def apply(self, writes: Sequence[Write]) -> None:
        writes = newest_per_key(writes)
        saves = [w for w in writes if w.value is not None]
        deletes = [w for w in writes if w.value is None]
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
        async with self.meter.guard(self.is_refusal):
            rows = await self.pg.fetch(
                GET_MANY, user_id, [c for c, _ in keys], [k for _, k in keys]
            )
        return [_memory(row) for row in rows]

    async def recall(
        self, user_id: str, category: Category | None = None, limit: int = 200
    ) -> list[Memory]:
        async with self.meter.guard(self.is_refusal):
            rows = await self.pg.fetch(RECALL, user_id, category, limit)
        return [_memory(row) for row in rows]

    def is_outage(self, exc: BaseException) -> bool:
        if isinstance(
            exc,
            OSError
            | TimeoutError
            | asyncpg.InterfaceError  # the connection was lost underneath us
            | asyncpg.PostgresConnectionError,
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
