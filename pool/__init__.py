"""An in-process pool of the clients a voice agent needs, per event loop: their
lifecycle, limits, retries, breakers, metrics, health and a two-layer cache."""

from __future__ import annotations

from .aio import cancel_and_wait
from .cache import Cache
from .cache_layers import SharedLayer
from .env import choice, default_of, number, read_env, setting
from .errors import (
    CircuitOpenError,
    ConfigError,
    PoolClosedError,
    PoolError,
    UnknownResourceError,
    WrongLoopError,
)
from .meter import Meter
from .metrics import ResourceMetrics
from .pool import ConnectionPool, get_pool
from .redact import install_log_redaction, redact, register_secrets
from .resilience import (
    CircuitBreaker,
    RetryBudget,
    RetryPolicy,
    is_retryable,
    retry_after_s,
    stream_with_retry,
)
from .resources import ResourceSpec, http_spec, openai_spec, warm_tls
from .settings import PoolSettings, check_url
from .sqlite_file import SqliteFile
from .stats import (
    BreakerState,
    ClientState,
    Connections,
    Health,
    Latency,
    PoolState,
    PoolStats,
    ResourceStats,
)

__all__ = [
    "BreakerState",
    "Cache",
    "CircuitBreaker",
    "CircuitOpenError",
    "ClientState",
    "ConfigError",
    "ConnectionPool",
    "Connections",
    "Health",
    "Latency",
    "Meter",
    "PoolClosedError",
    "PoolError",
    "PoolSettings",
    "PoolState",
    "PoolStats",
    "ResourceMetrics",
    "ResourceSpec",
    "ResourceStats",
    "RetryBudget",
    "RetryPolicy",
    "SharedLayer",
    "SqliteFile",
    "UnknownResourceError",
    "WrongLoopError",
    "cancel_and_wait",
    "check_url",
    "choice",
    "default_of",
    "get_pool",
    "http_spec",
    "install_log_redaction",
    "is_retryable",
    "number",
    "openai_spec",
    "read_env",
    "redact",
    "register_secrets",
    "retry_after_s",
    "setting",
    "stream_with_retry",
    "warm_tls",
]
