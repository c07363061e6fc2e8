"""The figures the pool reports, as typed snapshots: one shape for the agent's tool, the
room page's panel, the health loop and the tests.

``as_dict()`` is the JSON form; its keys are the field names, nested as the fields are.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

PoolState = Literal["open", "closed"]
BreakerState = Literal["closed", "open", "half-open"]
# HEALTHY at >= 95 % success over the rolling window, DEGRADED at >= 80 %, FAILED below or
# with an open breaker, UNKNOWN before any traffic
Health = Literal["HEALTHY", "DEGRADED", "FAILED", "UNKNOWN"]


class ClientState(enum.Enum):
    """Where a resource's client is in its life."""

    NOT_CREATED = "not created"  # registered, never asked for (or dropped to be rebuilt)
    OPEN = "open"
    BROKEN = "broken"  # closed underneath the pool: the next acquire rebuilds it


@dataclass
class Counts:
    """A resource's calls by how they ended; the pool's meters count into one, and a
    snapshot holds a copy."""

    requests: int = 0
    successes: int = 0
    failures: int = 0
    timeouts: int = 0
    slow_calls: int = 0
    rejected: int = 0  # refused by an open breaker, no request made
    stream_failures: int = 0  # began fine, then failed while streaming
    stalls: int = 0  # answered, but missed a first-output deadline
    retries: int = 0
    # the caller gave up (an interrupted reply, a deadline): neither success nor failure
    cancelled: int = 0
    refused: int = 0  # the service answered with a refusal of the request: it is up

    def copy(self) -> Counts:
        return Counts(**self.__dict__)


@dataclass(frozen=True)
class Latency:
    """Milliseconds over the recent samples (p95) and the resource's life (min/avg/max)."""

    min: float
    avg: float
    max: float
    p95: float


@dataclass(frozen=True)
class Connections:
    opened: int = 0
    reused: int = 0


@dataclass(frozen=True)
class ResourceStats:
    """One resource, or one capability of it (``openai.llm``)."""

    name: str
    client: ClientState
    health: Health
    breaker: BreakerState
    counts: Counts = field(default_factory=lambda: Counts())
    success_rate: float | None = None
    latency_ms: Latency | None = None
    connections: Connections = field(default_factory=Connections)
    breaker_opened: int = 0
    retries_denied: int = 0
    rebuilds: int = 0
    resets: int = 0
    created_at: float | None = None
    last_request_at: float | None = None
    last_error: str | None = None  # redacted
    # what the resource is, beside its counters (a provider's kind, priority and limit)
    info: Mapping[str, object] = field(default_factory=dict)

    @property
    def used(self) -> bool:
        return self.client is not ClientState.NOT_CREATED or self.counts.requests > 0

    def as_dict(self) -> dict[str, Any]:
        figures = asdict(self)
        figures["client"] = self.client.value
        figures["info"] = dict(self.info)
        figures["created_at"] = iso(self.created_at)
        figures["last_request_at"] = iso(self.last_request_at)
        return figures

    def summary(self) -> dict[str, Any]:
        """The figures worth reading aloud: what the agent's tool and the room page show."""
        return {
            "health": self.health,
            "breaker": self.breaker,
            "requests": self.counts.requests,
            "failures": self.counts.failures,
            "timeouts": self.counts.timeouts,
            "success_rate": self.success_rate,
            "latency_ms": {"p95": self.latency_ms.p95 if self.latency_ms else None},
            "connections": asdict(self.connections),
            "last_error": self.last_error,
            **({"info": dict(self.info)} if self.info else {}),
        }


@dataclass(frozen=True)
class PoolStats:
    state: PoolState
    created_at: float
    resources: Mapping[str, ResourceStats]
    taken_at: float = field(default_factory=time.time)

    @property
    def uptime_s(self) -> float:
        return round(self.taken_at - self.created_at, 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "created_at": iso(self.created_at),
            "uptime_s": self.uptime_s,
            "resources": {name: r.as_dict() for name, r in self.resources.items()},
        }


def iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
