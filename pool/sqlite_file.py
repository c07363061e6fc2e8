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
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        db.stop()  # see SqliteFile.abandon
        raise
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

    @classmethod
    @contextlib.asynccontextmanager
    async def opening(cls, path: str) -> AsyncIterator[SqliteFile]:
        """The file, for the body to set up (its schema); closed again if that fails or is
        cancelled."""
        file = await cls.open(path)
        try:
            yield file
        except BaseException:
            file.abandon()
            raise

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
        try:
            async with self._turn:
                await self.db.close()
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Close without waiting, so it happens even in a task being cancelled. aiosqlite's
        connection thread is not a daemon: one left running keeps the process from exiting
        (a worker told to stop while it opens its outbox would never exit)."""
        self.db.stop()
