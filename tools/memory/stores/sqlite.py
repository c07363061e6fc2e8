"""The default store: one SQLite file shared by every job process on the machine.

WAL mode lets readers and one writer work at once across processes; ``busy_timeout``
makes a writer wait for the lock instead of failing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from pool import Meter, SqliteFile

from ..model import Category, Memory, Write, newest_per_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    user_id    TEXT NOT NULL,
    category   TEXT NOT NULL CHECK (category IN ('FACT', 'PREFERENCE', 'CONTEXT')),
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (user_id, category, key)
);
CREATE INDEX IF NOT EXISTS memories_user_updated ON memories (user_id, updated_at DESC);
-- at most MAX_PER_CATEGORY memories per user and category: a new one evicts the least
-- recently confirmed (as the PostgreSQL migration 0003 does)
CREATE INDEX IF NOT EXISTS memories_user_category_updated
    ON memories (user_id, category, updated_at DESC);
CREATE TRIGGER IF NOT EXISTS memories_keep_cap AFTER INSERT ON memories
BEGIN
    DELETE FROM memories
    WHERE user_id = new.user_id AND category = new.category AND key IN (
        SELECT key FROM memories WHERE user_id = new.user_id AND category = new.category
        ORDER BY updated_at DESC, key LIMIT -1 OFFSET 500
    );
END;
-- deletes leave a stamp, so an older save replayed later cannot bring the memory back
CREATE TABLE IF NOT EXISTS memory_tombstones (
    user_id    TEXT NOT NULL,
    category   TEXT NOT NULL,
    key        TEXT NOT NULL,
    deleted_at REAL NOT NULL,
    PRIMARY KEY (user_id, category, key)
);
"""

UPSERT = """
INSERT INTO memories (user_id, category, key, value, created_at, updated_at)
SELECT ?1, ?2, ?3, ?4, ?5, ?5
WHERE NOT EXISTS (
    SELECT 1 FROM memory_tombstones
    WHERE user_id = ?1 AND category = ?2 AND key = ?3 AND deleted_at > ?5
)
ON CONFLICT (user_id, category, key) DO UPDATE
SET value = excluded.value, updated_at = excluded.updated_at
WHERE excluded.updated_at >= memories.updated_at
"""

DELETE = "DELETE FROM memories WHERE user_id = ? AND category = ? AND key = ? AND updated_at <= ?"

TOMBSTONE = """
INSERT INTO memory_tombstones (user_id, category, key, deleted_at) VALUES (?, ?, ?, ?)
ON CONFLICT (user_id, category, key) DO UPDATE SET deleted_at = max(deleted_at, excluded.deleted_at)
"""

COLUMNS = "user_id, category, key, value, created_at, updated_at"


def _memory(row: aiosqlite.Row | tuple[object, ...]) -> Memory:
    user_id, category, key, value, created_at, updated_at = tuple(row)
    return Memory(
        str(user_id),
        category,
        str(key),
        str(value),
        float(created_at),
        float(updated_at),  # type: ignore[arg-type]
    )


class SqliteStore:
    name = "sqlite"

    def __init__(self, file: SqliteFile, meter: Meter) -> None:
        self.file = file
        self.meter = meter

    @property
    def db(self) -> aiosqlite.Connection:
        return self.file.db

    @classmethod
    async def open(cls, path: str, meter: Meter) -> SqliteStore:
        async with SqliteFile.opening(path) as file:
            await file.db.executescript(SCHEMA)
            await file.db.commit()
        return cls(file, meter)

    async def apply(self, writes: Sequence[Write]) -> None:
        writes = newest_per_key(writes)
        saves = [
            (w.user_id, w.category, w.key, w.value, w.written_at)
            for w in writes
            if w.value is not None
        ]
        deletes = [(w.user_id, w.category, w.key, w.written_at) for w in writes if w.value is None]
        async with self.meter.guard(self.is_refusal), self.file.transaction() as db:
            if saves:
                await db.executemany(UPSERT, saves)
            if deletes:
                await db.executemany(DELETE, deletes)
                await db.executemany(TOMBSTONE, deletes)

    async def get_many(self, user_id: str, keys: Sequence[tuple[Category, str]]) -> list[Memory]:
        if not keys:
            return []
        pairs = ",".join("(?, ?)" for _ in keys)
        params: list[str] = [user_id]
        for category, key in keys:
            params += [category, key]
        query = (
            f"SELECT {COLUMNS} FROM memories WHERE user_id = ? "
            f"AND (category, key) IN (VALUES {pairs})"
        )
        async with (
            self.meter.guard(self.is_refusal),
            self.file.reading() as db,
            db.execute(query, params) as cursor,
        ):
            return [_memory(row) for row in await cursor.fetchall()]

    async def recall(
        self, user_id: str, category: Category | None = None, limit: int = 200
    ) -> list[Memory]:
        query = f"SELECT {COLUMNS} FROM memories WHERE user_id = ?"
        params: list[object] = [user_id]
        if category is not None:
            query += " AND category = ?"
            params.append(category)
        query += " ORDER BY updated_at DESC LIMIT ?"
        params.append(limit)
        async with (
            self.meter.guard(self.is_refusal),
            self.file.reading() as db,
            db.execute(query, params) as cursor,
        ):
            return [_memory(row) for row in await cursor.fetchall()]

    def is_outage(self, exc: BaseException) -> bool:
        # a locked database or a full disk passes; a constraint or a closed handle does not
        return isinstance(exc, sqlite3.OperationalError | TimeoutError)

    def is_refusal(self, exc: BaseException) -> bool:
        """The store answered and refused this request; it is up."""
        return isinstance(exc, sqlite3.DatabaseError) and not self.is_outage(exc)

    async def ping(self) -> None:
        async with self.file.reading() as db, db.execute("SELECT 1") as cursor:
            await cursor.fetchone()

    async def aclose(self) -> None:
        await self.file.aclose()
