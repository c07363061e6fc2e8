"""An in-process pool of the clients a voice agent needs, per event loop."""

from __future__ import annotations

from .errors import (
    CircuitOpenError,
    ConfigError,
    PoolClosedError,
    PoolError,
    UnknownResourceError,
    WrongLoopError,
)
from .meter import Meter
from .metrics import Health, ResourceMetrics
from .pool import ConnectionPool, get_pool
from .redact import install_log_redaction, redact, register_secrets
from .resilience import CircuitBreaker, RetryBudget, RetryPolicy, is_retryable, retry_after_s
from .resources import ResourceSpec, http_spec, openai_spec
from .settings import Settings

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigError",
    "ConnectionPool",
    "Health",
    "Meter",
    "PoolClosedError",
    "PoolError",
    "ResourceMetrics",
    "ResourceSpec",
    "RetryBudget",
    "RetryPolicy",
    "Settings",
    "UnknownResourceError",
    "WrongLoopError",
    "get_pool",
    "http_spec",
    "install_log_redaction",
    "is_retryable",
    "openai_spec",
    "redact",
    "register_secrets",
    "retry_after_s",
]
