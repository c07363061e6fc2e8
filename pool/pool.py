"""ConnectionPool: the clients one event loop needs, created once and shared.

A client belongs to the event loop that created it (an aiohttp session or an httpx
connection pool cannot be used from another loop), so there is one pool per running
loop: one per job process with livekit's process executor, one per job thread with its
thread executor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar, cast

import aiohttp
import httpx2
from openai import AsyncOpenAI, OpenAI

from .cache import Cache
from .cache_layers import SharedLayer, shared_layer_spec
from .errors import PoolClosedError, UnknownResourceError, WrongLoopError
from .health import HealthLoop
from .meter import Meter
from .redact import redact
from .resilience import RetryPolicy
from .resources import (
    PLACEHOLDER_KEY,
    ResourceSpec,
    http_spec,
    openai_limits,
    openai_spec,
    openai_timeout,
)
from .settings import PoolSettings
from .slot import Slot
from .stats import PoolState, PoolStats
from .transport import MeteredSyncTransport

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ConnectionPool:
    """Lazily created, cached clients for one event loop, with metrics and health."""

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self.created_at = time.time()
        self._state: PoolState = "open"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: dict[str, Slot] = {}
        self._opened: list[str] = []  # creation order, for closing in reverse
        self._sync_openai: OpenAI | None = None
        self._sync_lock = threading.Lock()
        self._health = HealthLoop(self)
        self.retry_policy = RetryPolicy.from_settings(settings)
        self.cache = self._build_cache()
        self.openai_spec = openai_spec(settings)
        self.http_spec = http_spec(settings)
        self.register(self.openai_spec)
        self.register(self.http_spec)

    # -- clients ---------------------------------------------------------------------

    def register(self, spec: ResourceSpec[Any]) -> None:
        """Make a kind of client known to the pool, so warm(), stats() and aclose() cover it."""
        if spec.name not in self._slots:
            self._slots[spec.name] = Slot(spec, self.settings)

    async def acquire(self, spec: ResourceSpec[T]) -> T:
        """The cached client for ``spec``, created on first use or after it broke."""
        self._check_usable()
        self.register(spec)
        slot = self._slots[spec.name]
        if slot.usable():
            return cast(T, slot.client)
        async with slot.lock:  # concurrent first callers share one creation
            self._check_usable()
            if slot.usable():
                return cast(T, slot.client)
            if slot.client is not None:
                logger.warning("%s client was closed underneath the pool; rebuilding", spec.name)
                await self._drop(slot)
                slot.rebuilds += 1
            # the registered spec: its close, probe and reset know the clients it opened
            slot.client = await slot.spec.open(slot.meter)
            slot.created_at = time.time()
            self._opened.append(spec.name)
            return cast(T, slot.client)

    async def openai(self) -> AsyncOpenAI:
        return await self.acquire(self.openai_spec)

    async def http(self) -> aiohttp.ClientSession:
        return await self.acquire(self.http_spec)

    def _build_cache(self) -> Cache:
        layer = shared_layer_spec(self.settings)
        self.register(layer)

        async def shared() -> SharedLayer:
            return cast(SharedLayer, await self.acquire(layer))

        settings = self.settings
        return Cache(shared, ttl_s=settings.cache_ttl_s, max_entries=settings.cache_max_entries)

    def openai_sync(self) -> OpenAI:
        """A synchronous client for code that cannot await; metered like the async one."""
        if self._state == "closed":
            raise PoolClosedError("The connection pool is closed.")
        with self._sync_lock:
            if self._sync_openai is None:
                meter = self._slots["openai"].meter
                transport = MeteredSyncTransport(
                    httpx2.HTTPTransport(limits=openai_limits(self.settings)), meter
                )
                self._sync_openai = OpenAI(
                    api_key=self.settings.openai_api_key or PLACEHOLDER_KEY,
                    base_url=self.settings.openai_base_url,
                    max_retries=0,
                    http_client=httpx2.Client(
                        transport=transport,
                        timeout=openai_timeout(self.settings),
                        follow_redirects=True,
                    ),
                )
            return self._sync_openai

    async def call(
        self,
        name: str,
        fn: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
        policy: RetryPolicy | None = None,
    ) -> T:
        """Run one of the pool's own calls to resource ``name`` with its retry policy and
        retry budget. A call that is not idempotent is made once."""
        meter = self.meter(name)
        policy = policy or self.retry_policy
        if not idempotent:
            policy = replace(policy, max_retries=0)
        return await policy.call(fn, budget=meter.retry_budget, on_retry=meter.on_retry)

    def meter(self, name: str) -> Meter:
        """A resource's meter, or one capability's: ``openai`` or ``openai.llm``."""
        resource, _, capability = name.partition(".")
        slot = self._slots.get(name) or self._slots.get(resource)
        if slot is None:
            raise UnknownResourceError(f"No resource named {name!r} is registered.")
        if slot.spec.name == name or not capability:
            return slot.meter
        return slot.meter.capability(capability)

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    @property
    def resource_names(self) -> list[str]:
        return list(self._slots)

    def was_used(self, name: str) -> bool:
        slot = self._slots.get(name)
        return slot is not None and (slot.client is not None or slot.rebuilds > 0)

    # -- lifecycle -------------------------------------------------------------------

    async def warm(self) -> dict[str, str]:
        """Open and probe every registered resource, so the first turn finds them ready.

        Never raises: a resource that fails to warm is reported and retried lazily.
        """
        self._check_usable()
        self._health.start()

        async def warm_one(slot: Slot) -> str:
            started = time.perf_counter()
            try:
                await self.probe(slot.spec.name)
            except Exception as exc:
                logger.warning("could not warm %s: %s", slot.spec.name, redact(str(exc)))
                return f"failed: {redact(type(exc).__name__)}"
            return f"ok in {(time.perf_counter() - started) * 1000:.0f} ms"

        slots = list(self._slots.values())
        results = await asyncio.gather(*(warm_one(slot) for slot in slots))
        return {slot.spec.name: result for slot, result in zip(slots, results, strict=True)}

    async def probe(self, name: str) -> None:
        """Open the client if needed and make one cheap real request through it."""
        slot = self._slots[name]
        client = await self.acquire(slot.spec)
        if slot.spec.probe is None:
            return
        timeout = self.settings.openai_connect_timeout_s * 2
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
        if slot.spec.meters_itself:
            async with asyncio.timeout(timeout):
                await slot.spec.probe(client)
        else:
            async with slot.meter.guard(), asyncio.timeout(timeout):
                await slot.spec.probe(client)
        # the resource answers again: a capability whose breaker opened during the outage
        # (a speech stream reconnecting) gets its trial call now, not after BREAKER_RESET_S
        for capability in slot.meter.children.values():
            capability.breaker.allow_trial()

    async def heal(self, name: str) -> bool:
        """Give a resource fresh connections, never closing a client someone still holds.

        A client handed out stays the caller's for as long as the pool is open (a session's
        plugins hold theirs for the whole conversation): a resource with a ``reset`` gets new
        connections behind the same client; one without is left alone while it is open.
        Only a client found closed is dropped; the next acquire() builds a new one.
        """
        slot = self._slots.get(name)
        if slot is None or slot.client is None:
            return False
        async with slot.lock:
            if slot.usable():
                if slot.spec.reset is None:
                    logger.info("left the %s client alone: it is open and may be in use", name)
                    return False
                await slot.spec.reset(slot.client)
                slot.resets += 1
                logger.info("replaced the %s connections; its client stays in use", name)
                return True
            await self._drop(slot)
            slot.rebuilds += 1
        logger.info("dropped the closed %s client; the next call builds a new one", name)
        return True

    async def cleanup(self) -> dict[str, list[str]]:
        """Drop clients found closed, give idle ones fresh connections where they can have
        them without being closed, and reset open breakers."""
        self._check_usable()
        report: dict[str, list[str]] = {
            "dropped_broken": [],
            "closed_idle": [],
            "breakers_reset": [],
        }
        now = time.time()
        for name, slot in self._slots.items():
            if slot.client is not None and not slot.usable():
                await self.heal(name)
                report["dropped_broken"].append(name)
            elif slot.client is not None and slot.spec.reset is not None:
                last = slot.meter.metrics.last_request_at or slot.created_at or now
                # past keep-alive the server has likely dropped the sockets anyway
                if now - last > self.settings.http_keepalive_s and await self.heal(name):
                    report["closed_idle"].append(name)
            for meter in slot.meters():
                if meter.breaker.state != "closed":
                    meter.breaker.reset()
                    report["breakers_reset"].append(meter.name)
        return report

    async def aclose(self) -> None:
        """Close every client, newest first. Safe to call more than once."""
        if self._state == "closed":
            return
        self._state = "closed"
        await self._health.stop()
        closing = list(reversed(self._opened))
        for name in closing:
            slot = self._slots[name]
            if slot.client is not None:
                await self._drop(slot)
        self._opened.clear()
        if self._sync_openai is not None:
            self._sync_openai.close()
            self._sync_openai = None
        _forget(self)
        logger.info("connection pool closed: %s", ", ".join(closing) or "no open clients")

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- reporting ---------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """A snapshot: per resource (and per capability) its counters, latency, health and
        breaker."""
        resources = {r.name: r for slot in self._slots.values() for r in slot.stats()}
        return PoolStats(state=self._state, created_at=self.created_at, resources=resources)

    # -- internals ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._state == "closed":
            raise PoolClosedError("The connection pool is closed.")
        running = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = running
        elif self._loop is not running:
            raise WrongLoopError(
                "This pool's clients belong to another event loop; use get_pool() in this loop."
            )

    async def _drop(self, slot: Slot) -> None:
        client, slot.client, slot.created_at = slot.client, None, None
        if slot.spec.name in self._opened:
            self._opened.remove(slot.spec.name)
        try:
            await slot.spec.close(client)
        except Exception as exc:  # a broken client may fail to close; it is gone either way
            logger.debug("closing %s failed: %s", slot.spec.name, redact(str(exc)))


# -- one pool per event loop ---------------------------------------------------------------

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectionPool] = (
    weakref.WeakKeyDictionary()
)
_pools_lock = threading.Lock()


def get_pool(settings: PoolSettings | None = None) -> ConnectionPool:
    """The pool of the running event loop, created on first use.

    ``settings`` are used only when this call creates the pool.
    """
    loop = asyncio.get_running_loop()
    with _pools_lock:
        pool = _pools.get(loop)
        if pool is None:
            pool = ConnectionPool(settings or PoolSettings.from_env())
            pool._loop = loop
            _pools[loop] = pool
        return pool


def _forget(pool: ConnectionPool) -> None:
    with _pools_lock:
        for loop, known in list(_pools.items()):
            if known is pool:
                del _pools[loop]
