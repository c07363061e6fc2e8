"""What the shared services count: Redis's command and connection counters, PostgreSQL's
statistics of one database. Read before and after a run; the difference is its cost."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import asyncpg
import redis

# what reading the counters sends, not what was measured
OWN_COMMANDS = {"info", "client", "config", "ping", "hello"}


@dataclass(frozen=True)
class RedisCount:
    commands: int
    connections: int  # opened since the server started
    clients: int  # connected now

    def __sub__(self, before: RedisCount) -> RedisCount:
        return RedisCount(
            self.commands - before.commands,
            self.connections - before.connections,
            self.clients,
        )


class RedisCounter:
    """Reads one server's counters over a connection of its own, opened once, so that
    reading them adds no connection to what they count."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5)

    def read(self) -> RedisCount:
        commands = self.client.info("commandstats")
        stats = self.client.info("stats")
        clients = self.client.info("clients")
        calls = sum(
            int(value["calls"])
            for name, value in commands.items()
            if name.removeprefix("cmdstat_").split("|")[0] not in OWN_COMMANDS
        )
        return RedisCount(
            calls,
            int(stats["total_connections_received"]),
            int(clients["connected_clients"]) - 1,  # not this reader's
        )

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class PgCount:
    transactions: int
    rows_written: int
    sessions: int  # opened since the statistics were reset
    busy_s: float  # time backends spent running statements
    backends: int  # connected now

    def __sub__(self, before: PgCount) -> PgCount:
        return PgCount(
            self.transactions - before.transactions,
            self.rows_written - before.rows_written,
            self.sessions - before.sessions,
            round(self.busy_s - before.busy_s, 3),
            self.backends,
        )


STATS = """
SELECT xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted, sessions,
       active_time / 1000.0,
       (SELECT count(*) FROM pg_stat_activity a
        WHERE a.datname = d.datname AND a.backend_type = 'client backend')
FROM pg_stat_database d WHERE datname = $1
"""


async def pg_count(admin_dsn: str, database: str) -> PgCount:
    """``database``'s statistics, read from another database so the reading is not in them."""
    db = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        row = await db.fetchrow(STATS, database)
    finally:
        with contextlib.suppress(Exception):
            await db.close()
    assert row is not None, f"no database {database}"
    return PgCount(int(row[0]), int(row[1]), int(row[2]), float(row[3]), int(row[4]))
