"""Errors raised by the pool.

PoolError
 ├── ConfigError          a setting is missing or malformed
 ├── PoolClosedError      the pool was used after aclose()
 ├── WrongLoopError       a client was asked for from another event loop
 ├── UnknownResourceError no resource of that name is registered
 └── CircuitOpenError     the resource's breaker is open; no call was made
"""

from __future__ import annotations


class PoolError(Exception):
    """Base class of every error the pool raises."""


class ConfigError(PoolError):
    """A setting is missing or malformed."""


class PoolClosedError(PoolError):
    """The pool has been closed and can hand out no more clients."""


class WrongLoopError(PoolError):
    """A pool's clients belong to the event loop that created them."""


class UnknownResourceError(PoolError):
    """No resource of that name is registered with the pool."""


class CircuitOpenError(PoolError):
    """The resource's circuit breaker is open, so the call was not attempted."""

    def __init__(self, resource: str, retry_in_s: float) -> None:
        super().__init__(
            f"The {resource} circuit breaker is open after repeated failures; "
            f"no request was sent. It will allow a trial call in {retry_in_s:.0f} s."
        )
        self.resource = resource
        self.retry_in_s = retry_in_s
