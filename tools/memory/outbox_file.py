"""The outbox's SQLite file: the writes that wait for the store, those set aside, and every
question asked of them. A write is durable here once :meth:`OutboxFile.put` returns
(WAL, ``synchronous=FULL``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Gauge

from pool import SqliteFile

from .model import Write

OUTBOX_WRITES = Gauge(
    "agent_memory_outbox_writes",
    "Memory writes in the durable outbox: pending (the store was unreachable; of them, "
    "retrying: failing on their own) or set_aside (refused, or failed too often; "
    "`python agent.py memory replay` retries them).",
    ["state"],
    multiprocess_mode="livemax",
)

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
    -- failed on its own while other writes were stored
    failures   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
-- writes the store refused (not an outage), or that failed too often: never retried blindly
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
_ROW = "seq, user_id, category, key, value, written_at, apart, failures"


@dataclass(frozen=True)
class QueuedWrite:
    seq: int
    write: Write
    apart: bool
    failures: int


def _queued(values: Sequence[Any]) -> QueuedWrite:
    seq, user_id, category, key, value, written_at, apart, failures = values
    return QueuedWrite(seq, Write(user_id, category, key, value, written_at), bool(apart), failures)


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


class OutboxFile:
    def __init__(self, file: SqliteFile) -> None:
        self.file = file

    @classmethod
    async def open(cls, path: str) -> OutboxFile:
        async with SqliteFile.opening(path) as file, file.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    await db.execute(statement)
            async with db.execute("PRAGMA table_info(outbox)") as cursor:
                present = {row[1] async for row in cursor}
            for column, kind in _COLUMNS_ADDED.items():
                if column not in present:
                    await db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
        return cls(file)

    async def put(self, writes: Sequence[Write]) -> None:
        async with self.file.transaction() as db:
            await db.executemany(
                "INSERT INTO outbox (user_id, category, key, value, written_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(w.user_id, w.category, w.key, w.value, w.written_at) for w in writes],
            )

    async def oldest(self, limit: int) -> list[QueuedWrite]:
        async with (
            self.file.reading() as db,
            db.execute(f"SELECT {_ROW} FROM outbox ORDER BY seq LIMIT ?", (limit,)) as cursor,
        ):
            return [_queued(values) for values in await cursor.fetchall()]

    async def delete(self, queued: Sequence[QueuedWrite]) -> None:
        async with self.file.transaction() as db:
            await db.executemany("DELETE FROM outbox WHERE seq = ?", [(q.seq,) for q in queued])

    async def keep_apart(self, queued: Sequence[QueuedWrite], reason: str) -> None:
        async with self.file.transaction() as db:
            await db.executemany(
                "UPDATE outbox SET apart = 1, last_error = ? WHERE seq = ?",
                [(reason, q.seq) for q in queued],
            )

    async def count_failure(self, queued: QueuedWrite, reason: str) -> None:
        async with self.file.transaction() as db:
            await db.execute(
                "UPDATE outbox SET apart = 1, failures = failures + 1, last_error = ? "
                "WHERE seq = ?",
                (reason, queued.seq),
            )

    async def set_aside(self, queued: QueuedWrite, reason: str) -> None:
        write = queued.write
        async with self.file.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO outbox_rejected VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    queued.seq,
                    write.user_id,
                    write.category,
                    write.key,
                    write.value,
                    write.written_at,
                    reason,
                ),
            )
            await db.execute("DELETE FROM outbox WHERE seq = ?", (queued.seq,))

    async def requeue_set_aside(self) -> int:
        """The set-aside writes back in the queue with their stamps, kept apart; how many."""
        async with self.file.transaction() as db:
            await db.execute(
                "INSERT INTO outbox (user_id, category, key, value, written_at, apart) "
                "SELECT user_id, category, key, value, written_at, 1 FROM outbox_rejected "
                "ORDER BY seq"
            )
            cursor = await db.execute("DELETE FROM outbox_rejected")
            return cursor.rowcount

    async def pending(self) -> int:
        async with self.file.reading() as db, db.execute("SELECT count(*) FROM outbox") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def waiting(self) -> tuple[int, float]:
        """Writes pending, and the age of the oldest in seconds."""
        async with (
            self.file.reading() as db,
            db.execute("SELECT count(*), min(written_at) FROM outbox") as cursor,
        ):
            row = await cursor.fetchone()
        if not row or not row[0]:
            return 0, 0.0
        return int(row[0]), max(time.time() - float(row[1]), 0.0)

    async def totals(self) -> dict[str, int]:
        """Writes pending (of which retrying: failing on their own) and set aside, in this
        file (every process of the worker); the Prometheus gauges follow."""
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

    async def aclose(self) -> None:
        await self.file.aclose()
