"""A resource's metrics and breaker, with the one way to time a call through them.

One client can serve several capabilities (an OpenAI endpoint does LLM, STT and TTS):
each gets a child meter, :meth:`Meter.capability`, with its own breaker and health, so
a slow LLM never opens the breaker speech recognition depends on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import prometheus
from .errors import CircuitOpenError
from .metrics import Outcome, ResourceMetrics
from .resilience import CircuitBreaker, RetryBudget


class Meter:
    """Counts, times and guards the calls made to one resource."""

    def __init__(
        self,
        metrics: ResourceMetrics,
        breaker: CircuitBreaker,
        *,
        slow_call_is_failure: bool = False,
        retry_budget: RetryBudget | None = None,
        make_child: Callable[[str], Meter] | None = None,
    ) -> None:
        self.metrics = metrics
        self.breaker = breaker
        self.slow_call_is_failure = slow_call_is_failure
        self.retry_budget = retry_budget or RetryBudget()
        self.children: dict[str, Meter] = {}
        self._make_child = make_child
        prometheus.observe_breaker(self.name, breaker.state)

    def capability(self, name: str) -> Meter:
        """The meter of one capability of this resource (``openai.llm``), made on first use."""
        child = self.children.get(name)
        if child is None:
            if self._make_child is None:
                return self
            child = self.children[name] = self._make_child(f"{self.name}.{name}")
        return child

    @property
    def name(self) -> str:
        return self.metrics.name

    def before_call(self) -> float:
        """Fail fast when the breaker is open; otherwise return the start time."""
        try:
            self.breaker.before_call()
        except CircuitOpenError:
            self.metrics.counts.rejected += 1
            prometheus.REJECTED.labels(self.name).inc()
            raise
        prometheus.observe_breaker(self.name, self.breaker.state)
        return time.perf_counter()

    def finish(
        self, started: float, outcome: Outcome, error: BaseException | None = None
    ) -> list[Any]:
        latency = time.perf_counter() - started
        entry = self.metrics.record(outcome, latency, error)
        prometheus.observe_call(self.name, outcome, latency)
        slow = latency >= self.metrics.slow_call_s
        if outcome == "refused" or (
            outcome == "success" and not (slow and self.slow_call_is_failure)
        ):
            self.breaker.on_success()
        else:
            self.breaker.on_failure()
        prometheus.observe_breaker(self.name, self.breaker.state)
        return entry

    def observe(
        self, started: float, outcome: Outcome, error: BaseException | None = None
    ) -> list[Any]:
        """Count a call in the metrics only: its breaker is another meter's (a capability's)."""
        latency = time.perf_counter() - started
        entry = self.metrics.record(outcome, latency, error)
        prometheus.observe_call(self.name, outcome, latency)
        return entry

    def stream_failed(self, entry: list[Any], outcome: Outcome, error: BaseException) -> None:
        """The response began (and was counted a success) but its stream then broke."""
        self.metrics.amend_to_failure(entry, outcome, error)
        prometheus.STREAM_FAILURES.labels(self.name).inc()
        self.breaker.on_failure()
        prometheus.observe_breaker(self.name, self.breaker.state)

    def stalled(self, error: BaseException) -> None:
        """A deadline above the HTTP layer (time to first token) was missed."""
        self.metrics.record_stall(error)
        prometheus.STALLS.labels(self.name).inc()
        self.breaker.on_failure()
        prometheus.observe_breaker(self.name, self.breaker.state)

    def failed_later(self, error: BaseException) -> None:
        """A call counted as made (a WebSocket opened) failed afterwards, outside any guard:
        a failure for its health and its breaker."""
        self.metrics.record_failure(error)
        self.breaker.on_failure()
        prometheus.observe_breaker(self.name, self.breaker.state)

    def cancelled(self) -> None:
        """The caller gave up on a call: counted apart, never against the resource."""
        self.metrics.counts.cancelled += 1
        self.breaker.on_cancel()

    def record_connection(self, *, reused: bool) -> None:
        self.metrics.record_connection(reused=reused)
        prometheus.CONNECTIONS.labels(self.name, "reused" if reused else "opened").inc()

    def on_retry(self, error: BaseException, delay_s: float) -> None:
        self.metrics.counts.retries += 1
        prometheus.RETRIES.labels(self.name).inc()

    @asynccontextmanager
    async def guard(
        self, is_refusal: Callable[[BaseException], bool] | None = None
    ) -> AsyncIterator[None]:
        """Time the body as one call; an exception counts as a failure and re-raises, unless
        ``is_refusal`` says the service answered and refused (a constraint, a permission):
        that is counted apart and never opens the breaker."""
        started = self.before_call()
        try:
            yield
        except asyncio.CancelledError:
            self.cancelled()
            raise
        except TimeoutError as exc:
            self.finish(started, "timeout", exc)
            raise
        except Exception as exc:
            refused = is_refusal is not None and is_refusal(exc)
            self.finish(started, "refused" if refused else "failure", exc)
            raise
        except BaseException as exc:
            self.finish(started, "failure", exc)
            raise
        self.finish(started, "success")
