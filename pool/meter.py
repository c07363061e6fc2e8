"""A resource's metrics and breaker, with the one way to time a call through them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .metrics import Outcome, ResourceMetrics
from .resilience import CircuitBreaker


class Meter:
    """Counts, times and guards the calls made to one resource."""

    def __init__(self, metrics: ResourceMetrics, breaker: CircuitBreaker) -> None:
        self.metrics = metrics
        self.breaker = breaker

    @property
    def name(self) -> str:
        return self.metrics.name

    def before_call(self) -> float:
        """Fail fast when the breaker is open; otherwise return the start time."""
        self.breaker.before_call()
        return time.perf_counter()

    def finish(self, started: float, outcome: Outcome, error: BaseException | None = None) -> None:
        latency = time.perf_counter() - started
        self.metrics.record(outcome, latency, error)
        if outcome == "success":
            self.breaker.on_success()
        else:
            self.breaker.on_failure()

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Time the body as one call; any exception counts as a failure and re-raises."""
        started = self.before_call()
        try:
            yield
        except TimeoutError as exc:
            self.finish(started, "timeout", exc)
            raise
        except BaseException as exc:
            self.finish(started, "failure", exc)
            raise
        self.finish(started, "success")
