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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cachetools import TTLCache

from .cache_layers import SharedLayer
from .errors import CircuitOpenError
from .redact import redact

logger = logging.getLogger(__name__)

T = TypeVar("T")


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

    async def get(self, key: str) -> Any:
        """The value stored under ``key`` (the shared layer's, if this process has none), or
        None. A broken shared layer is a miss."""
        if (encoded := self._local.get(key)) is not None:
            self.hits_local += 1
            return json.loads(encoded)
        shared = await self._shared_layer()
        if shared is None:
            return None
        try:
            found = await shared.get(key)
        except Exception as exc:
            _log_layer_error("read from", shared.name, exc)
            return None
        if found is None:
            return None
        self.hits_shared += 1
        return json.loads(found)

    async def put(
        self, key: str, value: Any, *, ttl: float | None = None, local: bool = True
    ) -> None:
        """Store ``value`` under ``key``; ``local=False`` keeps a large value out of this
        process's memory, in the shared layer only."""
        ttl_s = self.ttl_s if ttl is None else ttl
        encoded = json.dumps(value)
        if local:
            self._local_set(key, encoded, ttl_s)
        shared = await self._shared_layer()
        if shared is not None:
            try:
                await shared.set(key, encoded, ttl_s)
            except Exception as exc:
                _log_layer_error("write to", shared.name, exc)

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
