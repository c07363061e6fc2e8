"""Opening a SQLite file the way every part of this project needs it, and sharing its one
connection between the coroutines of a process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite


async def connect(path: str) -> aiosqlite.Connection:
    """WAL (readers and a writer across processes), FULL sync (a commit survives power
    loss: "durable before acknowledged"), and a writer that waits for the lock."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, timeout=10.0)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA busy_timeout=10000")
    return db


class SqliteFile:
    """One connection to a SQLite file, used by many coroutines in turn.

    A connection holds one transaction at a time. Two coroutines that each begin one on it
    would share it: the second ``BEGIN`` fails, and that caller's rollback undoes the first
    caller's writes, whose commit then commits nothing and reports success. So transactions
    (and reads, which would otherwise see another caller's uncommitted rows) take turns.
    Other processes are kept apart by SQLite's own file lock (``busy_timeout``).
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self._turn = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteFile:
        return cls(await connect(path))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Committed when the body ends, rolled back if it raises (or is cancelled)."""
        async with self._turn:
            try:
                # IMMEDIATE: take the write lock now, so a busy file waits here, not mid-write
                await self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                await self.db.commit()
            except BaseException:
                with contextlib.suppress(Exception):  # the original error is the one to see
                    await self.db.rollback()
                raise

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection between transactions: it sees only committed rows."""
        async with self._turn:
            yield self.db

    async def aclose(self) -> None:
        async with self._turn:
            await self.db.close()
