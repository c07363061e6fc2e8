"""Memory backends (SQLite, PostgreSQL, Supabase), and the pool resource that opens the
configured one."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from pool import ConnectionPool, Meter, ResourceSpec

from ..model import MemoryStore
from .postgres import apply_migration

if TYPE_CHECKING:
    from ...settings import Settings

STORE_BREAKER_RESET_S = 5.0


@functools.cache
def memory_spec(settings: Settings) -> ResourceSpec[MemoryStore]:
    """The configured backend as a pool resource, named after the backend."""

    async def open_store(meter: Meter) -> MemoryStore:
        if settings.memory_backend == "postgres":
            from .postgres import PostgresStore

            assert settings.database_url is not None
            return await PostgresStore.open(
                settings.database_url,
                meter,
                statement_cache_size=settings.pg_statement_cache_size,
                read_dsn=settings.database_read_url,
                max_lag_s=settings.memory_replica_max_lag_s,
            )
        if settings.memory_backend == "supabase":
            from .supabase import SupabaseStore

            assert settings.supabase_url is not None and settings.supabase_key is not None
            return await SupabaseStore.open(
                settings.supabase_url,
                settings.supabase_key,
                meter,
                jwt_secret=settings.supabase_jwt_secret,
            )
        from .sqlite import SqliteStore

        return await SqliteStore.open(settings.sqlite_path, meter)

    async def close(store: MemoryStore) -> None:
        await store.aclose()

    async def probe(store: MemoryStore) -> None:
        await store.ping()

    # a trial every few seconds: while the store is skipped, writes wait in the outbox and a
    # failover (a promoted replica found in about a second) should not cost BREAKER_RESET_S
    return ResourceSpec(
        name=settings.memory_backend,
        open=open_store,
        close=close,
        probe=probe,
        breaker_reset_s=STORE_BREAKER_RESET_S,
    )


async def memory_store(pool: ConnectionPool, settings: Settings) -> MemoryStore:
    """The pool's cached client for the configured memory backend."""
    return await pool.acquire(memory_spec(settings))


__all__ = ["STORE_BREAKER_RESET_S", "apply_migration", "memory_spec", "memory_store"]
