"""A durable write-behind queue for memory writes nobody is waiting on.

``put()`` returns only after the writes are committed to a local SQLite file (WAL,
``synchronous=FULL``), so an acknowledged write survives a crash. A flusher sends them
to the store in batches, retrying with backoff while it is down; what is left at
shutdown stays in the file and is replayed by the next process. Replay is safe because
every write carries its stamp and the store keeps the newest.

A write the store refuses (not an outage) is found by retrying its batch in halves and is
set aside alone, with the reason; ``python agent.py memory replay`` retries those after a
fix. An outage is logged once when it starts, summarised every minute, and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

import aiosqlite

from pool import CircuitOpenError, RetryPolicy, redact
from pool.prometheus import OUTBOX_WRITES
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
        summary_every_s: float = 60.0,
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
        self.outage = OutageLog(summary_every_s)

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
        """Send the oldest batch to the store; delete each write from the file once stored
        or set aside. Raises on an outage, leaving what was not stored for the next try."""
        async with self._flush_lock:
            async with self.db.execute(
                "SELECT seq, user_id, category, key, value, written_at FROM outbox "
                "ORDER BY seq LIMIT ?",
                (self.batch_size,),
            ) as cursor:
                rows = list(await cursor.fetchall())
            if not rows:
                return 0
            store = await self._store_for()
            stored: list[Write] = []
            try:
                await self._send(store, rows, stored)
            finally:
                self.outage.replayed(len(stored))
                if stored and self._on_flushed is not None:
                    await self._on_flushed(stored)
        return len(rows)

    async def _send(
        self, store: MemoryStore, rows: Sequence[aiosqlite.Row], stored: list[Write]
    ) -> None:
        """Apply ``rows``; on a refusal, apply each half in turn until the refused rows
        stand alone, and set those aside. An outage propagates."""
        writes = [Write(r[1], r[2], r[3], r[4], r[5]) for r in rows]
        try:
            await store.apply(writes)
        except Exception as exc:
            if isinstance(exc, CircuitOpenError) or store.is_outage(exc):
                raise
            if len(rows) == 1:
                await self._set_aside(rows[0], exc)
                return
            middle = len(rows) // 2
            await self._send(store, rows[:middle], stored)
            await self._send(store, rows[middle:], stored)
            return
        await self.db.executemany("DELETE FROM outbox WHERE seq = ?", [(r[0],) for r in rows])
        await self.db.commit()
        self.flushed += len(rows)
        stored.extend(writes)

    async def _set_aside(self, row: aiosqlite.Row, exc: Exception) -> None:
        error = redact(f"{type(exc).__name__}: {exc}")[:500]
        logger.error(
            "the memory store refused a queued %s write for user %r; set aside: %s",
            "delete" if row[4] is None else "save",
            row[1],
            error,
        )
        await self.db.execute(
            "INSERT OR REPLACE INTO outbox_rejected VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*tuple(row), error),
        )
        await self.db.execute("DELETE FROM outbox WHERE seq = ?", (row[0],))
        await self.db.commit()
        self.rejected += 1

    async def report(self) -> OutboxReport:
        """What waits and what was set aside, per user, for people and for stats."""
        now = time.time()
        report = OutboxReport()
        for table, into in (("outbox", report.pending), ("outbox_rejected", report.set_aside)):
            async with self.db.execute(
                f"SELECT user_id, count(*), min(written_at) FROM {table} GROUP BY user_id "
                "ORDER BY user_id"
            ) as cursor:
                async for user_id, count, oldest in cursor:
                    into[user_id] = (int(count), max(now - float(oldest), 0.0))
        async with self.db.execute(
            "SELECT error, count(*) FROM outbox_rejected GROUP BY error ORDER BY count(*) DESC"
        ) as cursor:
            report.reasons = [(str(error), int(count)) async for error, count in cursor]
        return report

    async def totals(self) -> dict[str, int]:
        """Writes pending and set aside, in this file (every process of the worker)."""
        async with self.db.execute(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM outbox_rejected)"
        ) as cursor:
            row = await cursor.fetchone()
        pending, set_aside = (int(row[0]), int(row[1])) if row else (0, 0)
        OUTBOX_WRITES.labels("pending").set(pending)
        OUTBOX_WRITES.labels("set_aside").set(set_aside)
        return {"pending": pending, "set_aside": set_aside}

    async def replay_set_aside(self) -> int:
        """Queue the set-aside writes again, with their original stamps (newest still wins);
        returns how many. Run after fixing what made the store refuse them."""
        async with self._flush_lock:
            await self.db.execute(
                "INSERT INTO outbox (user_id, category, key, value, written_at) "
                "SELECT user_id, category, key, value, written_at FROM outbox_rejected "
                "ORDER BY seq"
            )
            cursor = await self.db.execute("DELETE FROM outbox_rejected")
            await self.db.commit()
            count = cursor.rowcount
        self._wake.set()
        return count

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                try:
                    if await self.flush_once() == 0:
                        failures = 0
                        self.outage.ended()
                        await self.totals()
                        break
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    self.failed_flushes += 1
                    await self.note_outage(exc)
                    await self.totals()
                    await asyncio.sleep(self._backoff.backoff_s(min(failures, 10)))

    async def note_outage(self, exc: BaseException) -> None:
        """The store could not be reached (here or by a caller that queued instead)."""
        waiting, oldest = await self._waiting()
        self.outage.failed(redact(f"{type(exc).__name__}: {exc}")[:200], waiting, oldest)

    async def _waiting(self) -> tuple[int, float]:
        async with self.db.execute("SELECT count(*), min(written_at) FROM outbox") as cursor:
            row = await cursor.fetchone()
        if not row or not row[0]:
            return 0, 0.0
        return int(row[0]), max(time.time() - float(row[1]), 0.0)

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
                await self.note_outage(exc)
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
        await self.close()
        return left

    async def close(self) -> None:
        """Close the file without flushing (what is in it stays for the next start)."""
        if self._db is not None:
            await self._db.close()
            self._db = None


@dataclass
class OutboxReport:
    # user id -> (writes, age of the oldest in seconds)
    pending: dict[str, tuple[int, float]] = field(default_factory=dict)
    set_aside: dict[str, tuple[int, float]] = field(default_factory=dict)
    reasons: list[tuple[str, int]] = field(default_factory=list)  # (error, writes)

    def totals(self) -> dict[str, int]:
        return {
            "pending": sum(n for n, _ in self.pending.values()),
            "set_aside": sum(n for n, _ in self.set_aside.values()),
        }


class OutageLog:
    """One line when an outage starts, a summary every ``summary_every_s`` while it lasts,
    one line when it ends: a database down for an hour is three kinds of line, not
    thousands."""

    def __init__(self, summary_every_s: float = 60.0) -> None:
        self.summary_every_s = summary_every_s
        self.since: float | None = None
        self._last_said = 0.0
        self._replayed = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, error: str, waiting: int, oldest_s: float) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self._last_said, self._replayed = now, now, 0
            logger.warning(
                "memory store unreachable (%s); writes wait in the outbox and are retried",
                error,
            )
        elif now - self._last_said >= self.summary_every_s:
            self._last_said = now
            logger.warning(
                "memory store still unreachable after %.0f s (%s); %d writes wait, "
                "the oldest for %.0f s",
                now - self.since,
                error,
                waiting,
                oldest_s,
            )

    def replayed(self, count: int) -> None:
        if self.since is not None:
            self._replayed += count

    def ended(self) -> None:
        if self.since is None:
            return
        logger.info(
            "memory store back after %.0f s; %d queued writes replayed",
            time.monotonic() - self.since,
            self._replayed,
        )
        self.since = None
