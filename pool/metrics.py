"""Per-resource counters, latency summary and health class.

Health is judged over a rolling time window, not lifetime totals, so a resource
regains HEALTHY once an incident has aged out of the window.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from .redact import redact
from .stats import Connections, Counts, Health, Latency

# "refused": the service answered and said no (a constraint, a permission); it is up
Outcome = Literal["success", "failure", "timeout", "refused"]

HEALTHY_AT = 0.95
DEGRADED_AT = 0.80
# enough samples for a stable p95 without unbounded memory
LATENCY_SAMPLES = 1024


@dataclass
class ResourceMetrics:
    name: str
    window_s: float = 300.0
    slow_call_s: float = 2.0
    created_at: float = field(default_factory=time.time)
    counts: Counts = field(default_factory=Counts)
    connections_opened: int = 0
    connections_reused: int = 0
    last_request_at: float | None = None
    last_error: str | None = None
    _latency_min: float = float("inf")
    _latency_max: float = 0.0
    _latency_sum: float = 0.0
    _latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    # [monotonic time, succeeded] of recent calls, for the rolling health class
    _recent: deque[list[Any]] = field(default_factory=lambda: deque(maxlen=10_000))

    def record(
        self, outcome: Outcome, latency_s: float, error: BaseException | None = None
    ) -> list[Any]:
        """Count one call; returns its window entry, for :meth:`amend_to_failure`."""
        self.counts.requests += 1
        self.last_request_at = time.time()
        ok = outcome in ("success", "refused")
        if outcome == "refused":
            self.counts.refused += 1
        elif ok:
            self.counts.successes += 1
        else:
            self.counts.failures += 1
            if outcome == "timeout":
                self.counts.timeouts += 1
            if error is not None:
                self.last_error = redact(f"{type(error).__name__}: {error}")[:300]
        if latency_s >= self.slow_call_s:
            self.counts.slow_calls += 1
        self._latency_min = min(self._latency_min, latency_s)
        self._latency_max = max(self._latency_max, latency_s)
        self._latency_sum += latency_s
        self._latencies.append(latency_s)
        entry = [time.monotonic(), ok]
        self._recent.append(entry)
        return entry

    def amend_to_failure(
        self, entry: list[Any], outcome: Outcome, error: BaseException | None
    ) -> None:
        """A call counted as a success when its response began failed while streaming."""
        if not entry[1]:
            return
        entry[1] = False
        self.counts.successes -= 1
        self.counts.failures += 1
        self.counts.stream_failures += 1
        if outcome == "timeout":
            self.counts.timeouts += 1
        if error is not None:
            self.last_error = redact(f"{type(error).__name__}: {error}")[:300]

    def record_stall(self, error: BaseException) -> None:
        """The resource answered but too slowly to be used: a failure for its health."""
        self.counts.stalls += 1
        self._failed(error)

    def record_failure(self, error: BaseException) -> None:
        """A failure found after the call was counted (a WebSocket that broke later)."""
        self.counts.failures += 1
        self._failed(error)

    def _failed(self, error: BaseException) -> None:
        self.last_error = redact(f"{type(error).__name__}: {error}")[:300]
        self._recent.append([time.monotonic(), False])

    def record_connection(self, *, reused: bool) -> None:
        if reused:
            self.connections_reused += 1
        else:
            self.connections_opened += 1

    def window_success_rate(self) -> float | None:
        """Success rate over the rolling window; None when the window saw no call."""
        horizon = time.monotonic() - self.window_s
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        if not self._recent:
            return None
        return sum(1 for _, ok in self._recent if ok) / len(self._recent)

    def health(self, *, breaker_open: bool = False) -> Health:
        if breaker_open:
            return "FAILED"
        rate = self.window_success_rate()
        if rate is None:
            # idle: judged by nothing recent; UNKNOWN only before any traffic at all
            return "UNKNOWN" if self.counts.requests == 0 else "HEALTHY"
        if rate >= HEALTHY_AT:
            return "HEALTHY"
        if rate >= DEGRADED_AT:
            return "DEGRADED"
        return "FAILED"

    def latency_ms(self) -> Latency | None:
        if not self._latencies:
            return None
        ordered = sorted(self._latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return Latency(
            min=round(self._latency_min * 1000, 1),
            avg=round(self._latency_sum / self.counts.requests * 1000, 1),
            max=round(self._latency_max * 1000, 1),
            p95=round(p95 * 1000, 1),
        )

    @property
    def success_rate(self) -> float | None:
        return (
            round(self.counts.successes / self.counts.requests, 3) if self.counts.requests else None
        )

    @property
    def connections(self) -> Connections:
        return Connections(opened=self.connections_opened, reused=self.connections_reused)
