"""A durable write-behind queue for memory writes nobody is waiting on.

``put()`` returns only after the writes are committed to a local SQLite file (WAL,
``synchronous=FULL``), so an acknowledged write survives a crash. A flusher sends them
to the store in batches, retrying with backoff while it is down; what is left at
shutdown stays in the file and is replayed by the next process. Replay is safe because
every write carries its stamp and the store keeps the newest.

A write the store refuses (not an outage) is found by retrying its batch in halves and is
set aside alone, with the reason; ``python agent.py memory replay`` retries those after a
fix. A batch that fails as an outage while the store answers (a locked row, a statement
that times out) is split the same way, so the good writes land; its failing writes are
sent apart from fresh ones from then on, and one that fails on its own ``MAX_FAILURES``
times while other writes were stored beside it is set aside too. When nothing can be stored
(the store is down, or takes no writes at all) no write is blamed: they all wait.
An outage is logged once when it starts, summarised every minute, and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from pool import CircuitOpenError, RetryPolicy, redact
from pool.prometheus import OUTBOX_WRITES
from pool.sqlite_file import SqliteFile

from .model import MemoryStore, Write

logger = logging.getLogger("memory.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    category   TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT,
    written_at REAL NOT NULL,
    -- failed in a batch while the store answered: sent apart from fresh writes from then on
    apart      INTEGER NOT NULL DEFAULT 0,
    -- failed on its own while other writes were stored: set aside at MAX_FAILURES
    failures   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
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
# outbox files written before writes counted their own failures
_COLUMNS_ADDED = {
    "apart": "INTEGER NOT NULL DEFAULT 0",
    "failures": "INTEGER NOT NULL DEFAULT 0",
    "last_error": "TEXT",
}
ROW = "seq, user_id, category, key, value, written_at, apart, failures"

# a write that failed this many times on its own, each time while other writes were
# stored, is set aside: it would otherwise be retried forever (a locked row, a statement
# that always times out)
MAX_FAILURES = 5
# failed sends in a row, with nothing stored, after which the store is taken to accept
# no writes at all (a read-only primary, a full disk): an outage, counted against no write
GIVE_UP_AFTER = 3
PING_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class _Row:
    seq: int
    write: Write
    apart: bool
    failures: int


def _row(values: Sequence[Any]) -> _Row:
    seq, user_id, category, key, value, written_at, apart, failures = values
    return _Row(seq, Write(user_id, category, key, value, written_at), bool(apart), failures)


def _reason(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")[:500]


@dataclass
class _Flush:
    """What one flush did, while it bisects its batch."""

    stored: list[Write] = field(default_factory=list)
    set_aside: int = 0
    failed_alone: list[tuple[_Row, BaseException]] = field(default_factory=list)
    failed_in_a_row: int = 0
    store_answers: bool | None = None  # pinged once, at the first outage of the flush


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
        self._file: SqliteFile | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.flushed = 0
        self.failed_flushes = 0
        self.rejected = 0
        self.outage = OutageLog(summary_every_s)

    async def open(self) -> Outbox:
        self._file = await SqliteFile.open(self.path)
        async with self._file.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    await db.execute(statement)
            async with db.execute("PRAGMA table_info(outbox)") as cursor:
                present = {row[1] async for row in cursor}
            for column, kind in _COLUMNS_ADDED.items():
                if column not in present:
                    await db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
        return self

    def start(self) -> None:
        """Start the background flusher; it first replays what a previous process left."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="memory-outbox")
            self._wake.set()

    @property
    def file(self) -> SqliteFile:
        if self._file is None:
            raise RuntimeError("The outbox is not open; call open() first.")
        return self._file

    async def put(self, writes: list[Write]) -> None:
        """Durable when this returns."""
        if not writes:
            return
        async with self.file.transaction() as db:
            await db.executemany(
                "INSERT INTO outbox (user_id, category, key, value, written_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(w.user_id, w.category, w.key, w.value, w.written_at) for w in writes],
            )
        self._wake.set()

    async def pending(self) -> int:
        async with self.file.reading() as db, db.execute("SELECT count(*) FROM outbox") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def flush_once(self) -> int:
        """Send the oldest batch to the store; returns how many of its writes were stored or
        set aside, each deleted from the file as it is. Raises the store's error (or the
        breaker's) when none could be, leaving them for the next try.

        Writes that failed before are sent apart from fresh ones, so one that keeps failing
        never holds back the writes behind it; a batch that fails while the store answers
        is split in halves until the writes that fail stand alone.
        """
        async with self._flush_lock:
            async with (
                self.file.reading() as db,
                db.execute(
                    f"SELECT {ROW} FROM outbox ORDER BY seq LIMIT ?", (self.batch_size,)
                ) as cursor,
            ):
                rows = [_row(values) for values in await cursor.fetchall()]
            if not rows:
                return 0
            store = await self._store_for()
            flush = _Flush()
            try:
                await self._send(store, rows, flush)
            finally:
                self.outage.replayed(len(flush.stored))
                if flush.stored and self._on_flushed is not None:
                    await self._on_flushed(flush.stored)
        return len(flush.stored) + flush.set_aside

    async def _send(self, store: MemoryStore, rows: list[_Row], flush: _Flush) -> None:
        """Apply the batch, bisecting a failing part breadth-first: a sibling is tried
        before going deeper, so a stored write shows early that the store takes writes."""
        parts: deque[list[_Row]] = deque()
        for group in ([r for r in rows if not r.apart], [r for r in rows if r.apart]):
            if group:
                parts.append(group)
        while parts:
            part = parts.popleft()
            try:
                await store.apply([r.write for r in part])
            except Exception as exc:
                if isinstance(exc, CircuitOpenError):
                    raise
                if store.is_outage(exc):
                    flush.failed_in_a_row += 1
                    if not flush.stored and not await self._takes_writes(store, flush):
                        await self._keep_apart([r for p in (part, *parts) for r in p], exc)
                        raise
                    if len(part) == 1:
                        flush.failed_alone.append((part[0], exc))
                        continue
                elif len(part) == 1:
                    await self._set_aside(part[0], _reason(exc))
                    flush.set_aside += 1
                    continue
                middle = len(part) // 2
                parts.extend((part[:middle], part[middle:]))
                continue
            flush.failed_in_a_row = 0
            async with self.file.transaction() as db:
                await db.executemany("DELETE FROM outbox WHERE seq = ?", [(r.seq,) for r in part])
            self.flushed += len(part)
            flush.stored.extend(r.write for r in part)
        await self._count_failures(flush)

    async def _takes_writes(self, store: MemoryStore, flush: _Flush) -> bool:
        """Whether to go on bisecting a flush that has stored nothing yet: not when the
        store does not answer, nor when every part tried in a row has failed."""
        if flush.failed_in_a_row >= GIVE_UP_AFTER:
            return False
        if flush.store_answers is None:
            try:
                async with asyncio.timeout(PING_TIMEOUT_S):
                    await store.ping()
            except Exception:
                flush.store_answers = False
            else:
                flush.store_answers = True
        return flush.store_answers

    async def _count_failures(self, flush: _Flush) -> None:
        """A write that failed alone counts a failure only if others were stored beside it;
        otherwise the store was in trouble, not the write."""
        if not flush.failed_alone:
            return
        if not flush.stored:
            last = flush.failed_alone[-1][1]
            await self._keep_apart([row for row, _ in flush.failed_alone], last)
            raise last
        for row, exc in flush.failed_alone:
            reason = _reason(exc)
            if row.failures + 1 >= MAX_FAILURES:
                await self._set_aside(
                    row, f"failed {MAX_FAILURES} times while other writes were stored: {reason}"
                )
                flush.set_aside += 1
                continue
            async with self.file.transaction() as db:
                await db.execute(
                    "UPDATE outbox SET apart = 1, failures = failures + 1, last_error = ? "
                    "WHERE seq = ?",
                    (reason, row.seq),
                )

    async def _keep_apart(self, rows: Sequence[_Row], exc: BaseException) -> None:
        """Rows of a batch that failed while the store answered: sent apart from now on."""
        async with self.file.transaction() as db:
            await db.executemany(
                "UPDATE outbox SET apart = 1, last_error = ? WHERE seq = ?",
                [(_reason(exc), r.seq) for r in rows],
            )

    async def _set_aside(self, row: _Row, reason: str) -> None:
        write = row.write
        logger.error(
            "a queued %s write for user %r is set aside: %s",
            "delete" if write.value is None else "save",
            write.user_id,
            reason,
        )
        async with self.file.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO outbox_rejected VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    row.seq,
                    write.user_id,
                    write.category,
                    write.key,
                    write.value,
                    write.written_at,
                    reason,
                ),
            )
            await db.execute("DELETE FROM outbox WHERE seq = ?", (row.seq,))
        self.rejected += 1

    async def report(self) -> OutboxReport:
        """What waits and what was set aside, per user, for people and for stats."""
        now = time.time()
        report = OutboxReport()
        groups = (
            ("outbox", "", report.pending),
            ("outbox", "WHERE failures > 0", report.retrying),
            ("outbox_rejected", "", report.set_aside),
        )
        async with self.file.reading() as db:
            for table, where, into in groups:
                async with db.execute(
                    f"SELECT user_id, count(*), min(written_at) FROM {table} {where} "
                    "GROUP BY user_id ORDER BY user_id"
                ) as cursor:
                    async for user_id, count, oldest in cursor:
                        into[user_id] = (int(count), max(now - float(oldest), 0.0))
            async with db.execute(
                "SELECT error, count(*) FROM outbox_rejected GROUP BY error ORDER BY count(*) DESC"
            ) as cursor:
                report.reasons = [(str(error), int(count)) async for error, count in cursor]
            async with db.execute(
                "SELECT last_error, count(*), max(failures) FROM outbox WHERE failures > 0 "
                "GROUP BY last_error ORDER BY count(*) DESC"
            ) as cursor:
                report.failing = [
                    (str(error), int(count), int(most)) async for error, count, most in cursor
                ]
        return report

    async def totals(self) -> dict[str, int]:
        """Writes pending (of which retrying: failing on their own) and set aside, in this
        file (every process of the worker)."""
        async with (
            self.file.reading() as db,
            db.execute(
                "SELECT (SELECT count(*) FROM outbox), "
                "(SELECT count(*) FROM outbox WHERE failures > 0), "
                "(SELECT count(*) FROM outbox_rejected)"
            ) as cursor,
        ):
            row = await cursor.fetchone()
        pending, retrying, set_aside = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
        OUTBOX_WRITES.labels("pending").set(pending)
        OUTBOX_WRITES.labels("retrying").set(retrying)
        OUTBOX_WRITES.labels("set_aside").set(set_aside)
        return {"pending": pending, "retrying": retrying, "set_aside": set_aside}

    async def replay_set_aside(self) -> int:
        """Queue the set-aside writes again, with their original stamps (newest still wins);
        returns how many. Run after fixing what made the store refuse them."""
        async with self._flush_lock, self.file.transaction() as db:
            await db.execute(
                "INSERT INTO outbox (user_id, category, key, value, written_at, apart) "
                "SELECT user_id, category, key, value, written_at, 1 FROM outbox_rejected "
                "ORDER BY seq"
            )
            cursor = await db.execute("DELETE FROM outbox_rejected")
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
        self.outage.failed(_reason(exc)[:200], waiting, oldest)

    async def _waiting(self) -> tuple[int, float]:
        async with (
            self.file.reading() as db,
            db.execute("SELECT count(*), min(written_at) FROM outbox") as cursor,
        ):
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
        if self._file is None:
            return 0
        left = await self.drain(deadline_s)
        if left:
            logger.warning("%d memory writes stay in %s for the next start", left, self.path)
        await self.close()
        return left

    async def close(self) -> None:
        """Close the file without flushing (what is in it stays for the next start)."""
        if self._file is not None:
            await self._file.aclose()
            self._file = None


@dataclass
class OutboxReport:
    # user id -> (writes, age of the oldest in seconds)
    pending: dict[str, tuple[int, float]] = field(default_factory=dict)
    # of the pending, those that failed on their own while other writes were stored
    retrying: dict[str, tuple[int, float]] = field(default_factory=dict)
    set_aside: dict[str, tuple[int, float]] = field(default_factory=dict)
    reasons: list[tuple[str, int]] = field(default_factory=list)  # (error, writes)
    failing: list[tuple[str, int, int]] = field(default_factory=list)  # (error, writes, failures)

    def totals(self) -> dict[str, int]:
        return {
            "pending": sum(n for n, _ in self.pending.values()),
            "retrying": sum(n for n, _ in self.retrying.values()),
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
