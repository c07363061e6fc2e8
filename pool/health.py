"""The background health loop: a cheap tick often, real probes rarely, healing as it goes."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from .aio import cancel_and_wait
from .redact import redact
from .settings import PoolSettings
from .stats import ClientState, PoolStats

logger = logging.getLogger(__name__)


class Healable(Protocol):
    """What the loop needs of a pool: its state, a probe and a heal per resource."""

    settings: PoolSettings

    @property
    def closed(self) -> bool: ...

    @property
    def resource_names(self) -> list[str]: ...

    def stats(self) -> PoolStats: ...

    def was_used(self, name: str) -> bool: ...

    async def probe(self, name: str) -> None: ...

    async def heal(self, name: str) -> bool: ...


class HealthLoop:
    """Every ``health_tick_s``: rebuild clients found closed and log error counts.
    Every ``health_probe_s``: probe each open client; heal the ones that fail.
    """

    def __init__(self, pool: Healable) -> None:
        self.pool = pool
        self.task: asyncio.Task[None] | None = None
        self._last_failures: dict[str, int] = {}

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="pool-health-loop")

    async def stop(self) -> None:
        task, self.task = self.task, None
        await cancel_and_wait([task])

    async def _run(self) -> None:
        settings = self.pool.settings
        next_probe = time.monotonic() + settings.health_probe_s
        while not self.pool.closed:
            await asyncio.sleep(settings.health_tick_s)
            try:
                await self.tick()
                if time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + settings.health_probe_s
                    await self.probe_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any one bad round
                logger.exception("health loop round failed")

    async def tick(self) -> None:
        """Cheap: no network. Heal clients that were closed, log new errors."""
        for name, entry in self.pool.stats().resources.items():
            if entry.client is ClientState.BROKEN:
                await self.pool.heal(name)
            new_failures = entry.counts.failures - self._last_failures.get(name, 0)
            self._last_failures[name] = entry.counts.failures
            if new_failures:
                logger.warning(
                    "%s: %d failed calls since the last tick (health %s, breaker %s): %s",
                    name,
                    new_failures,
                    entry.health,
                    entry.breaker,
                    entry.last_error,
                )

    async def probe_all(self) -> dict[str, str]:
        """One real request per open client; a client that fails it is healed (pool.heal)."""
        results: dict[str, str] = {}
        for name in self.pool.resource_names:
            # a client never asked for stays unopened; one that was dropped is rebuilt here,
            # so the next call finds it ready once the dependency answers again
            if not self.pool.was_used(name):
                continue
            try:
                await self.pool.probe(name)
                results[name] = "ok"
            except Exception as exc:
                results[name] = redact(f"{type(exc).__name__}: {exc}")[:200]
                logger.warning("%s failed its health probe: %s", name, results[name])
                await self.pool.heal(name)
        return results
