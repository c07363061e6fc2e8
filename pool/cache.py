"""A TTL cache with single-flight, in two layers.

Each LiveKit job runs in a fresh process, so an in-process cache alone never hits across
sessions. The local ``cachetools`` layer answers repeats within a process; behind it a
shared layer (a table in a SQLite file for one machine, Redis across machines) answers
other processes. Concurrent misses for one key make one upstream call. Errors are not
cached. Values are JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from cachetools import TTLCache
from redis.asyncio.sentinel import Sentinel

from .errors import CircuitOpenError
from .meter import Meter
from .redact import redact
from .resources import ResourceSpec
from .sqlite_file import SqliteFile

logger = logging.getLogger("pool.cache")

T = TypeVar("T")


class SharedLayer(Protocol):
    name: str

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_s: float) -> None: ...

    async def delete(self, key: str) -> None: ...


class SqliteLayer:
    """A ``cache`` table in a SQLite file every process of the machine opens."""

    name = "sqlite-cache"

    def __init__(self, file: SqliteFile, meter: Meter) -> None:
        self.file = file
        self.meter = meter

    @classmethod
    async def open(cls, path: str, meter: Meter) -> SqliteLayer:
        file = await SqliteFile.open(path)
        async with file.transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                "expires_at REAL NOT NULL)"
            )
        return cls(file, meter)

    async def get(self, key: str) -> str | None:
        async with (
            self.meter.guard(),
            self.file.reading() as db,
            db.execute(
                "SELECT value FROM cache WHERE key = ? AND expires_at > ?", (key, time.time())
            ) as cursor,
        ):
            row = await cursor.fetchone()
        return str(row[0]) if row else None

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        async with self.meter.guard(), self.file.transaction() as db:
            await db.execute(
                "INSERT INTO cache (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at",
                (key, value, time.time() + ttl_s),
            )
            # expired rows go on the writer's time, never a reader's
            await db.execute("DELETE FROM cache WHERE expires_at <= ?", (time.time(),))

    async def delete(self, key: str) -> None:
        async with self.meter.guard(), self.file.transaction() as db:
            await db.execute("DELETE FROM cache WHERE key = ?", (key,))

    async def aclose(self) -> None:
        await self.file.aclose()


class RedisLayer:
    """Redis keys with a TTL (``SET ... PX``): shared by every machine."""

    name = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        meter: Meter,
        prefix: str = "agent:cache:",
        *,
        sentinel: Sentinel | None = None,
    ) -> None:
        self.client = client
        self.meter = meter
        self.prefix = prefix
        self.sentinel = sentinel

    async def get(self, key: str) -> str | None:
        async with self.meter.guard():
            value = await self.client.get(self.prefix + key)
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        async with self.meter.guard():
            await self.client.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000)))

    async def delete(self, key: str) -> None:
        async with self.meter.guard():
            await self.client.delete(self.prefix + key)

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            for client in self.sentinel.sentinels:
                await client.aclose()


def sqlite_layer_spec(path: str) -> ResourceSpec[SqliteLayer]:
    async def open_layer(meter: Meter) -> SqliteLayer:
        return await SqliteLayer.open(path, meter)

    async def close(layer: SqliteLayer) -> None:
        await layer.aclose()

    async def probe(layer: SqliteLayer) -> None:
        await layer.get("probe")

    return ResourceSpec(
        "sqlite-cache", open_layer, close, probe, breaker_reset_s=CACHE_BREAKER_RESET_S
    )


# a trial call every few seconds: while Redis is skipped each lookup costs a recompute
CACHE_BREAKER_RESET_S = 5.0


def redis_layer_spec(url: str) -> ResourceSpec[RedisLayer]:
    async def open_layer(meter: Meter) -> RedisLayer:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        return RedisLayer(client, meter)

    async def close(layer: RedisLayer) -> None:
        await layer.aclose()

    async def probe(layer: RedisLayer) -> None:
        await layer.client.ping()

    return ResourceSpec("redis", open_layer, close, probe, breaker_reset_s=CACHE_BREAKER_RESET_S)


def redis_sentinel_layer_spec(
    sentinels: Sequence[tuple[str, int]],
    master: str,
    *,
    password: str | None = None,
    sentinel_password: str | None = None,
) -> ResourceSpec[RedisLayer]:
    """Redis behind Sentinel: the client asks the sentinels where the master is, and asks
    again when its connection to the master fails (a failover)."""

    async def open_layer(meter: Meter) -> RedisLayer:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(sentinels),
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            sentinel_kwargs={"password": sentinel_password, "socket_timeout": 0.5},
        )
        client = sentinel.master_for(
            master, socket_timeout=1.0, socket_connect_timeout=1.0, password=password
        )
        return RedisLayer(client, meter, sentinel=sentinel)

    async def close(layer: RedisLayer) -> None:
        await layer.aclose()

    async def probe(layer: RedisLayer) -> None:
        await layer.client.ping()

    return ResourceSpec("redis", open_layer, close, probe, breaker_reset_s=CACHE_BREAKER_RESET_S)


def _log_layer_error(action: str, layer: str, exc: Exception) -> None:
    # the breaker's open spell was logged when it opened; each skipped call need not be
    level = logging.DEBUG if isinstance(exc, CircuitOpenError) else logging.WARNING
    logger.log(level, "cache %s %s failed: %s", action, layer, redact(str(exc)))


class Cache:
    def __init__(
        self,
        shared: Callable[[], Awaitable[SharedLayer]] | None = None,
        *,
        ttl_s: float = 300.0,
        max_entries: int = 100,
    ) -> None:
        self.ttl_s = ttl_s
        self._local: TTLCache[str, str] = TTLCache(maxsize=max_entries, ttl=ttl_s)
        self._shared = shared
        self._in_flight: dict[str, asyncio.Future[str]] = {}
        self.hits_local = 0
        self.hits_shared = 0
        self.misses = 0

    async def cached_async_call(
        self,
        key: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        ttl: float | None = None,
    ) -> T:
        """``fn(*args)``'s result, from the cache when it holds one for ``key``."""
        ttl_s = self.ttl_s if ttl is None else ttl
        if (encoded := self._local.get(key)) is not None:
            self.hits_local += 1
            return json.loads(encoded)  # type: ignore[no-any-return]
        if (pending := self._in_flight.get(key)) is not None:
            return json.loads(await asyncio.shield(pending))  # type: ignore[no-any-return]

        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            encoded = await self._load(key, fn, args, ttl_s)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # every waiter re-raises it; mark it retrieved here
            raise
        else:
            future.set_result(encoded)
        finally:
            del self._in_flight[key]
        return json.loads(encoded)  # type: ignore[no-any-return]

    async def _load(
        self, key: str, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], ttl_s: float
    ) -> str:
        shared = await self._shared_layer()
        if shared is not None:
            try:
                found = await shared.get(key)
            except Exception as exc:  # a broken shared layer costs a recompute, not a failure
                _log_layer_error("read from", shared.name, exc)
                found = None
            if found is not None:
                self.hits_shared += 1
                self._local_set(key, found, ttl_s)
                return found
        self.misses += 1
        encoded = json.dumps(await fn(*args))
        self._local_set(key, encoded, ttl_s)
        if shared is not None:
            try:
                await shared.set(key, encoded, ttl_s)
            except Exception as exc:
                _log_layer_error("write to", shared.name, exc)
        return encoded

    def _local_set(self, key: str, encoded: str, ttl_s: float) -> None:
        # TTLCache has one TTL; a shorter per-call TTL is kept by the shared layer alone
        if ttl_s >= self._local.ttl:
            self._local[key] = encoded

    async def invalidate(self, key: str) -> None:
        self._local.pop(key, None)
        shared = await self._shared_layer()
        if shared is not None:
            try:
                await shared.delete(key)
            except Exception as exc:
                _log_layer_error("delete in", shared.name, exc)

    async def _shared_layer(self) -> SharedLayer | None:
        if self._shared is None:
            return None
        try:
            return await self._shared()
        except Exception as exc:
            logger.warning("shared cache unavailable: %s", redact(str(exc)))
            return None

    def stats(self) -> dict[str, int]:
        return {
            "hits_local": self.hits_local,
            "hits_shared": self.hits_shared,
            "misses": self.misses,
            "entries": len(self._local),
        }
