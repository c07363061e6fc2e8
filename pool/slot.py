"""One registered resource in the pool: its spec, its meter (and its capabilities'), and
its client once created."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from . import prometheus
from .meter import Meter
from .metrics import ResourceMetrics
from .resilience import CircuitBreaker, RetryBudget
from .resources import ResourceSpec
from .settings import PoolSettings
from .stats import ClientState, ResourceStats


class Slot:
    """One registered resource: its spec, meter and (once created) its client."""

    def __init__(self, spec: ResourceSpec[Any], settings: PoolSettings) -> None:
        self.spec = spec
        if spec.breaker_reset_s is not None:
            settings = replace(settings, breaker_reset_s=spec.breaker_reset_s)
        self.meter = meter_for(spec.name, settings)
        self.client: Any = None
        self.created_at: float | None = None
        self.lock = asyncio.Lock()
        self.rebuilds = 0
        self.resets = 0

    def usable(self) -> bool:
        return self.client is not None and not self.spec.is_closed(self.client)

    @property
    def state(self) -> ClientState:
        if self.client is None:
            return ClientState.NOT_CREATED
        return ClientState.OPEN if self.usable() else ClientState.BROKEN

    def meters(self) -> list[Meter]:
        """The client's meter, then one per capability it served (``openai.llm``)."""
        return [self.meter, *self.meter.children.values()]

    def stats(self) -> list[ResourceStats]:
        """The resource's figures, then one per capability."""
        figures = []
        for meter in self.meters():
            metrics, breaker = meter.metrics, meter.breaker.state
            figures.append(
                ResourceStats(
                    name=meter.name,
                    client=self.state,
                    health=metrics.health(breaker_open=breaker == "open"),
                    breaker=breaker,
                    counts=metrics.counts.copy(),
                    success_rate=metrics.success_rate,
                    latency_ms=metrics.latency_ms(),
                    connections=metrics.connections,
                    breaker_opened=meter.breaker.times_opened,
                    retries_denied=meter.retry_budget.denied,
                    rebuilds=self.rebuilds,
                    resets=self.resets,
                    created_at=self.created_at,
                    last_request_at=metrics.last_request_at,
                    last_error=metrics.last_error,
                    info=self.spec.info,
                )
            )
        return figures


def meter_for(name: str, settings: PoolSettings) -> Meter:
    return Meter(
        ResourceMetrics(name, window_s=settings.health_window_s, slow_call_s=settings.slow_call_s),
        CircuitBreaker(
            name,
            failure_threshold=settings.breaker_failure_threshold,
            reset_timeout_s=settings.breaker_reset_s,
            failure_rate=settings.breaker_failure_rate,
            window=settings.breaker_window,
            min_calls=settings.breaker_min_calls,
        ),
        slow_call_is_failure=settings.slow_call_is_failure,
        retry_budget=RetryBudget(
            settings.retry_budget_ratio,
            on_denied=prometheus.RETRIES_DENIED.labels(name).inc,
        ),
        make_child=lambda child: meter_for(child, settings),
    )
