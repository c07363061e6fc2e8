"""Memory backends, and the pool resource that opens the configured one."""

from __future__ import annotations

import functools

from pool import ConnectionPool, Meter, ResourceSpec, Settings

from ..memory import MemoryService, MemoryStore
from ..outbox import Outbox

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

        return await SqliteStore.open(settings.memory_sqlite_path, meter)

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


async def memory_store(pool: ConnectionPool) -> MemoryStore:
    """The pool's cached client for the configured memory backend."""
    return await pool.acquire(memory_spec(pool.settings))


async def open_memory_service(pool: ConnectionPool) -> MemoryService:
    """The memory service of this process: the pool's store plus a started outbox."""
    settings = pool.settings

    async def store() -> MemoryStore:
        return await memory_store(pool)

    service = MemoryService(pool, memory_store)
    outbox = Outbox(settings.memory_outbox_path, store, on_flushed=service.notify_flushed)
    service.outbox = await outbox.open()
    outbox.start()
    return service
