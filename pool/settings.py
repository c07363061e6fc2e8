"""The pool's own settings: its clients' limits and timeouts, retries, breakers, health and
cache, read once from the environment (and ``.env``), frozen afterwards.

Secrets are fields with ``secret=True`` (no ``repr``) and are registered for redaction,
so printing settings or logging an error that quotes one never shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from .env import read_env, setting
from .errors import ConfigError
from .redact import redact, register_secrets

RetryStrategy = Literal["exponential", "linear", "fixed", "none"]
JitterMode = Literal["full", "proportional", "none"]
Http2 = Literal["auto", "true", "false"]

S = TypeVar("S", bound="PoolSettings")


def host_ports(variable: str, raw: str, env: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port``"""
    found = []
    for item in raw.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{variable} must be host:port,host:port..., got {item.strip()!r}.")
        found.append((host, int(port)))
    return tuple(found)


@dataclass(frozen=True, kw_only=True)
class PoolSettings:
    # the OpenAI-compatible endpoint of the default `openai` resource
    openai_api_key: str = setting("OPENAI_API_KEY", "", secret=True)
    openai_base_url: str | None = setting("OPENAI_BASE_URL")
    # per attempt; the SDK's own default read timeout is 600 s, useless for a voice turn
    openai_connect_timeout_s: float = setting("OPENAI_CONNECT_TIMEOUT_S", 5.0, check="positive")
    openai_read_timeout_s: float = setting("OPENAI_READ_TIMEOUT_S", 15.0, check="positive")
    openai_max_connections: int = setting("OPENAI_MAX_CONNECTIONS", 50, check="positive")
    openai_keepalive_s: float = setting("OPENAI_KEEPALIVE_S", 60.0, check="positive")
    # auto: on for OpenAI's own API (it serves HTTP/2), off for other endpoints, where
    # HTTP/2 optimism makes concurrent requests wait on one handshake at a time if the
    # server turns out to speak HTTP/1.1 only
    openai_http2: Http2 = setting("OPENAI_HTTP2", "auto")

    # the aiohttp session shared by plugins and tools
    http_max_connections: int = setting("HTTP_MAX_CONNECTIONS", 100, check="positive")
    http_max_per_host: int = setting("HTTP_MAX_PER_HOST", 30, check="positive")
    http_keepalive_s: float = setting("HTTP_KEEPALIVE_S", 60.0, check="positive")
    http_dns_cache_s: int = setting("HTTP_DNS_CACHE_S", 300, check="positive")

    # the machine's SQLite file: the cache's shared layer (and the default memory store)
    sqlite_path: str = setting("MEMORY_SQLITE_PATH", "data/memory.db")
    # the cache's shared layer across machines, instead of the SQLite file
    redis_url: str | None = setting("REDIS_URL", secret=True)
    # Redis behind Sentinel: (host, port) of each sentinel and the master's name
    redis_sentinels: tuple[tuple[str, int], ...] = setting("REDIS_SENTINELS", (), parse=host_ports)
    redis_sentinel_master: str | None = setting("REDIS_SENTINEL_MASTER")
    redis_password: str | None = setting("REDIS_PASSWORD", secret=True)
    redis_sentinel_password: str | None = setting("REDIS_SENTINEL_PASSWORD", secret=True)
    cache_ttl_s: float = setting("GREETING_TTL_S", 300.0, check="positive")
    cache_max_entries: int = setting("GREETING_CACHE_SIZE", 100, check="positive")

    # the pool's own calls (stores, greetings, learning); plugins retry through livekit
    retry_strategy: RetryStrategy = setting("RETRY_STRATEGY", "exponential")
    retry_max_attempts: int = setting("RETRY_MAX_ATTEMPTS", 3, check="positive")
    retry_base_s: float = setting("RETRY_BASE_S", 1.0, check="positive")
    retry_max_delay_s: float = setting("RETRY_MAX_DELAY_S", 60.0, check="positive")
    retry_jitter: JitterMode = setting("RETRY_JITTER", "full")
    retry_budget_ratio: float = setting("RETRY_BUDGET_RATIO", 0.1, check="non_negative")
    call_deadline_s: float = setting("CALL_DEADLINE_S", 8.0, check="positive")
    breaker_failure_threshold: int = setting("BREAKER_FAILURE_THRESHOLD", 5, check="positive")
    breaker_reset_s: float = setting("BREAKER_RESET_S", 300.0, check="positive")
    breaker_failure_rate: float | None = setting("BREAKER_FAILURE_RATE", check="fraction")
    breaker_window: int = setting("BREAKER_WINDOW", 20, check="positive")
    breaker_min_calls: int = setting("BREAKER_MIN_CALLS", 10, check="positive")
    slow_call_s: float = setting("SLOW_CALL_S", 2.0, check="positive")
    slow_call_is_failure: bool = setting("SLOW_CALL_IS_FAILURE", False)
    health_window_s: float = setting("HEALTH_WINDOW_S", 300.0, check="positive")
    health_tick_s: float = setting("HEALTH_TICK_S", 60.0, check="positive")
    health_probe_s: float = setting("HEALTH_PROBE_S", 300.0, check="positive")

    def __post_init__(self) -> None:
        # however settings are made, their secrets are masked from then on
        register_secrets(self.secrets)

    @classmethod
    def from_env(cls: type[S], env: Mapping[str, str] | None = None) -> S:
        import os

        settings = read_env(cls, os.environ if env is None else env)
        settings.validate()
        return settings

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for redaction: the fields with no ``repr``."""
        values = [getattr(self, f.name) for f in fields(self) if not f.repr]
        return tuple(v for v in values if isinstance(v, str) and v)

    def public(self) -> dict[str, object]:
        """The settings as a dict with every secret left out or redacted."""
        return {
            f.name: redact(str(v)) if isinstance(v, str) else v
            for f in fields(self)
            if f.repr and (v := getattr(self, f.name)) is not None
        }

    def http2_for(self, base_url: str | None) -> bool:
        if self.openai_http2 != "auto":
            return self.openai_http2 == "true"
        return base_url is None or "api.openai.com" in base_url

    def validate(self) -> None:
        if self.http_max_per_host > self.http_max_connections:
            raise ConfigError("HTTP_MAX_PER_HOST cannot be larger than HTTP_MAX_CONNECTIONS.")
        check_url("REDIS_URL", self.redis_url, ("redis", "rediss", "unix"))
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_master):
            raise ConfigError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together.")
        check_url("OPENAI_BASE_URL", self.openai_base_url, ("http", "https"))


def check_url(name: str, url: str | None, schemes: tuple[str, ...]) -> None:
    """A URL that does not parse is named at start, with its secret parts masked."""
    if url is None:
        return
    try:
        parts = urlsplit(url)
        # libpq-style host lists (h1:5432,h2:5432) are checked host by host
        for host in parts.netloc.rsplit("@", 1)[-1].split(","):
            urlsplit(f"//{host}").port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"{name} does not parse as a URL ({exc}): {redact(url)!r}.") from None
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix"):
        raise ConfigError(f"{name} must look like {schemes[0]}://host..., got {redact(url)!r}.")
