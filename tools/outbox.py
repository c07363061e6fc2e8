"""A durable write-behind queue for memory writes nobody is waiting on.

``put()`` returns only after the writes are committed to a local SQLite file (WAL,
``synchronous=FULL``), so an acknowledged write survives a crash. A flusher sends them
to the store in batches, retrying with backoff while it is down; what is left at
shutdown stays in the file and is replayed by the next process. Replay is safe because
every write carries its stamp and the store keeps the newest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress

import aiosqlite

from pool import CircuitOpenError, RetryPolicy, redact
from pool.sqlite_file import connect

from .model import MemoryStore, Write

logger = logging.getLogger("memory.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    category   TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT,
    written_at REAL NOT NULL
);
-- writes the store refused (not an outage): kept, never retried blindly
CREATE TABLE IF NOT EXISTS outbox_rejected (
    seq        INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    category   TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT,
    written_at REAL NOT NULL,
    error      TEXT NOT NULL
);
"""


class Outbox:
    def __init__(
        self,
        path: str,
        store_for: Callable[[], Awaitable[MemoryStore]],
        *,
        batch_size: int = 500,
        backoff: RetryPolicy | None = None,
        on_flushed: Callable[[list[Write]], Awaitable[None]] | None = None,
    ) -> None:
        self.path = path
        self._store_for = store_for
        self.batch_size = batch_size
        self._backoff = backoff or RetryPolicy(base_s=0.2, max_delay_s=10.0)
        self._on_flushed = on_flushed
        self._db: aiosqlite.Connection | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.flushed = 0
        self.failed_flushes = 0
        self.rejected = 0

    async def open(self) -> Outbox:
        self._db = await connect(self.path)
        await self._db.executescript(SCHEMA)
        await self._db.commit()
        return self

    def start(self) -> None:
        """Start the background flusher; it first replays what a previous process left."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="memory-outbox")
            self._wake.set()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("The outbox is not open; call open() first.")
        return self._db

    async def put(self, writes: list[Write]) -> None:
        """Durable when this returns."""
        if not writes:
            return
        await self.db.executemany(
            "INSERT INTO outbox (user_id, category, key, value, written_at) VALUES (?, ?, ?, ?, ?)",
            [(w.user_id, w.category, w.key, w.value, w.written_at) for w in writes],
        )
        await self.db.commit()
        self._wake.set()

    async def pending(self) -> int:
        async with self.db.execute("SELECT count(*) FROM outbox") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def flush_once(self) -> int:
        """Send the oldest batch to the store; delete it from the file once stored."""
        async with self._flush_lock:
            async with self.db.execute(
                "SELECT seq, user_id, category, key, value, written_at FROM outbox "
                "ORDER BY seq LIMIT ?",
                (self.batch_size,),
            ) as cursor:
                rows = list(await cursor.fetchall())
            if not rows:
                return 0
            writes = [Write(r[1], r[2], r[3], r[4], r[5]) for r in rows]
            store = await self._store_for()
            try:
                await store.apply(writes)
            except Exception as exc:
                if isinstance(exc, CircuitOpenError) or store.is_outage(exc):
                    raise
                await self._reject(rows, exc)
                return len(rows)
            await self.db.execute("DELETE FROM outbox WHERE seq <= ?", (rows[-1][0],))
            await self.db.commit()
            self.flushed += len(rows)
        if self._on_flushed is not None:
            await self._on_flushed(writes)
        return len(rows)

    async def _reject(self, rows: list[aiosqlite.Row], exc: Exception) -> None:
        error = redact(f"{type(exc).__name__}: {exc}")[:500]
        logger.error("the memory store refused %d queued writes; kept aside: %s", len(rows), error)
        await self.db.executemany(
            "INSERT OR REPLACE INTO outbox_rejected VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*tuple(row), error) for row in rows],
        )
        await self.db.execute("DELETE FROM outbox WHERE seq <= ?", (rows[-1][0],))
        await self.db.commit()
        self.rejected += len(rows)

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                try:
                    if await self.flush_once() == 0:
                        failures = 0
                        break
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    self.failed_flushes += 1
                    delay = self._backoff.backoff_s(min(failures, 10))
                    logger.warning(
                        "outbox flush failed (%s); %d writes wait, retrying in %.1f s",
                        redact(f"{type(exc).__name__}: {exc}")[:200],
                        await self.pending(),
                        delay,
                    )
                    await asyncio.sleep(delay)

    async def drain(self, deadline_s: float) -> int:
        """Flush until empty or the deadline; returns how many writes stay for the next start."""
        give_up_at = time.monotonic() + deadline_s
        while time.monotonic() < give_up_at:
            try:
                remaining = give_up_at - time.monotonic()
                async with asyncio.timeout(max(remaining, 0.01)):
                    if await self.flush_once() == 0:
                        break
            except (TimeoutError, Exception) as exc:
                logger.warning("outbox drain: %s", redact(f"{type(exc).__name__}: {exc}")[:200])
                await asyncio.sleep(min(0.2, max(give_up_at - time.monotonic(), 0)))
        return await self.pending()

    async def aclose(self, deadline_s: float = 5.0) -> int:
        """Stop the flusher, drain with a deadline, close the file. Returns writes left."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._db is None:
            return 0
        left = await self.drain(deadline_s)
        if left:
            logger.warning("%d memory writes stay in %s for the next start", left, self.path)
        await self._db.close()
        self._db = None
        return left
