"""The cache's shared layers: a table in the machine's SQLite file, or Redis (plain or
behind Sentinel) across machines; each a pool resource with its own breaker."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from .meter import Meter
from .resources import ResourceSpec
from .settings import PoolSettings
from .sqlite_file import SqliteFile


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
        async with SqliteFile.opening(path) as file, file.transaction() as db:
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


def shared_layer_spec(settings: PoolSettings) -> ResourceSpec[Any]:
    """Redis across machines when configured, else a table in the machine's SQLite file."""
    if settings.redis_sentinels:
        assert settings.redis_sentinel_master is not None
        return redis_sentinel_layer_spec(
            settings.redis_sentinels,
            settings.redis_sentinel_master,
            password=settings.redis_password,
            sentinel_password=settings.redis_sentinel_password,
        )
    if settings.redis_url:
        return redis_layer_spec(settings.redis_url)
    return sqlite_layer_spec(settings.sqlite_path)
