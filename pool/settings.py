"""Settings read once from the environment (and `.env`), frozen afterwards.

Secrets are fields with ``repr=False`` and are registered for redaction, so printing
a ``Settings`` or logging an error that quotes one never shows them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Literal, TypeVar, cast, get_args
from urllib.parse import urlsplit

from .errors import ConfigError
from .redact import redact, register_secrets

MemoryBackend = Literal["sqlite", "postgres", "supabase"]
RetryStrategy = Literal["exponential", "linear", "fixed", "none"]
JitterMode = Literal["full", "proportional", "none"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Provider:
    """One provider in a failover chain: an OpenAI-compatible endpoint, or Yandex SpeechKit
    (speech only)."""

    name: str
    base_url: str | None = None
    api_key: str = field(default="", repr=False)
    model: str | None = None
    voice: str | None = None
    kind: ProviderKind = "openai"
    priority: int = 10  # lower first; ties keep the list's order
    max_connections: int = 50
    keepalive_s: float | None = None
    folder_id: str | None = None  # SpeechKit's folderId, where the key needs one
    language: str | None = None  # e.g. en-US
    # the variable holding a Google service account (its JSON, or a path to the file)
    credentials_env: str | None = None

    def info(self) -> dict[str, object]:
        """What the stats show of it beside its counters."""
        return {
            "kind": self.kind,
            "priority": self.priority,
            "max_connections": self.max_connections,
        }


ProviderKind = Literal["openai", "google", "yandex"]
# the registry this project grew from: OpenAI, then Google Cloud, then Yandex SpeechKit;
# (priority, max_connections) per kind
KIND_DEFAULTS: dict[str, tuple[int, int]] = {
    "openai": (10, 50),
    "google": (20, 100),
    "yandex": (30, 40),
}


@dataclass(frozen=True, kw_only=True)
class Settings:
    # OpenAI-compatible endpoint used by the LLM, STT and TTS plugins
    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    stt_model: str = "gpt-4o-mini-transcribe"
    tts_model: str = "gpt-4o-mini-tts"
    tts_voice: str = "ash"
    # per attempt; the SDK's own default read timeout is 600 s, useless for a voice turn
    openai_connect_timeout_s: float = 5.0
    openai_read_timeout_s: float = 15.0
    openai_max_connections: int = 50
    openai_keepalive_s: float = 60.0
    # auto: on for OpenAI's own API (it serves HTTP/2), off for other endpoints, where
    # HTTP/2 optimism makes concurrent requests wait on one handshake at a time if the
    # server turns out to speak HTTP/1.1 only
    openai_http2: Literal["auto", "true", "false"] = "auto"

    # the aiohttp session shared by plugins and tools
    http_max_connections: int = 100
    http_max_per_host: int = 30
    http_keepalive_s: float = 60.0
    http_dns_cache_s: int = 300

    # memory
    memory_backend: MemoryBackend = "sqlite"
    memory_sqlite_path: str = "data/memory.db"
    # several hosts (libpq style, h1:5432,h2:5432): writes go to whichever is the primary
    database_url: str | None = field(default=None, repr=False)
    # a replica for session-start recall; the primary answers when it lags or is down
    database_read_url: str | None = field(default=None, repr=False)
    memory_replica_max_lag_s: float = 5.0
    # 0 for Supabase's transaction-mode pooler (port 6543), which breaks prepared statements
    pg_statement_cache_size: int = 100
    supabase_url: str | None = None
    supabase_key: str | None = field(default=None, repr=False)
    # signs a token per user, so row-level security holds on the agent's own requests
    supabase_jwt_secret: str | None = field(default=None, repr=False)
    memory_outbox_path: str = "data/outbox.db"
    memory_recall_budget_ms: float = 150.0
    memory_ops_per_second: float = 200.0
    memory_max_in_flight: int = 16

    user_id: str = "console-user"
    # how long a room job waits for its person before it ends
    participant_wait_s: float = 60.0
    # explicit dispatch: rooms get this agent only when they ask for it by this name
    agent_name: str | None = None
    # conversations one worker takes at once, and job processes kept ready for them
    max_conversations: int = 8
    idle_processes: int = 2
    # on SIGTERM, conversations may go on this long before their jobs are ended
    drain_timeout_s: float = 3600.0
    # a job being ended lets the reply in flight finish for this long
    turn_drain_s: float = 5.0
    redis_url: str | None = field(default=None, repr=False)
    # Redis behind Sentinel: (host, port) of each sentinel and the master's name
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_sentinel_password: str | None = field(default=None, repr=False)
    greeting_ttl_s: float = 300.0
    greeting_cache_size: int = 100

    # resilience
    retry_strategy: RetryStrategy = "exponential"
    retry_max_attempts: int = 3
    retry_base_s: float = 1.0
    retry_max_delay_s: float = 60.0
    retry_jitter: JitterMode = "full"
    retry_budget_ratio: float = 0.1
    call_deadline_s: float = 8.0
    breaker_failure_threshold: int = 5
    breaker_reset_s: float = 300.0
    slow_call_s: float = 2.0
    health_window_s: float = 300.0
    health_tick_s: float = 60.0
    health_probe_s: float = 300.0
    breaker_failure_rate: float | None = None
    breaker_window: int = 20
    breaker_min_calls: int = 10
    slow_call_is_failure: bool = False
    llm_ttft_deadline_s: float = 1.5
    # in a speech chain, a provider (all but the last) that sends no audio within this fails
    # the sentence over to the next; and a recognition taking longer than this, the utterance
    tts_first_audio_deadline_s: float = 2.0
    stt_attempt_timeout_s: float = 5.0
    # a person hears "One moment." when the model has said nothing by then (0: never)
    # 1.0 s after the request is ~1.8 s after the person stopped speaking (the VAD's 0.55 s
    # end-of-speech silence, STT), within the 2 s a pause starts to feel like no answer
    ack_after_s: float | None = 1.0
    # the personal greeting is waited for this long, then the generic one is said
    greeting_deadline_s: float = 2.0
    # failover chains, highest priority first; empty: the one OPENAI_* endpoint
    llm_providers: tuple[Provider, ...] = ()
    stt_providers: tuple[Provider, ...] = ()
    tts_providers: tuple[Provider, ...] = ()

    # a LiveKit server or LiveKit Cloud, for `start` and `dev`
    livekit_url: str | None = None
    livekit_api_key: str | None = field(default=None, repr=False)
    livekit_api_secret: str | None = field(default=None, repr=False)
    # unset: livekit's own (INFO for `start`; DEBUG for `dev` and `console`, whose text mode
    # shows the agent's unprompted words, the greeting, only as a DEBUG line)
    log_level: str | None = None

    prometheus_port: int | None = None
    # the worker's health-check HTTP server; livekit's default is 8081 in production
    agent_http_port: int | None = None

    def __post_init__(self) -> None:
        # however a Settings is made, its secrets are masked from then on
        register_secrets(self.secrets)

    def require_openai(self) -> None:
        """Refuse to start a conversation with no way to reach a model."""
        if not self.openai_api_key and not self.openai_base_url:
            raise ConfigError(
                "Set OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible "
                "server) in the environment or in .env."
            )

    def require_livekit(self) -> None:
        """A worker needs a server to register with: say so in one line, not a traceback."""
        if not (self.livekit_url and self.livekit_api_key and self.livekit_api_secret):
            missing = [
                name
                for name, value in (
                    ("LIVEKIT_URL", self.livekit_url),
                    ("LIVEKIT_API_KEY", self.livekit_api_key),
                    ("LIVEKIT_API_SECRET", self.livekit_api_secret),
                )
                if not value
            ]
            raise ConfigError(
                f"Set {', '.join(missing)}: a worker needs LIVEKIT_URL, LIVEKIT_API_KEY and "
                "LIVEKIT_API_SECRET of a LiveKit server (`livekit-server --dev`: "
                "ws://127.0.0.1:7880, devkey, secret) or LiveKit Cloud project; "
                "`python agent.py console` needs none."
            )
        scheme = self.livekit_url.split("://", 1)[0].lower() if "://" in self.livekit_url else ""
        if scheme not in ("ws", "wss", "http", "https"):
            raise ConfigError(
                f"LIVEKIT_URL must start with ws://, wss://, http:// or https://, "
                f"got {redact(self.livekit_url)!r}."
            )

    def http2_for(self, base_url: str | None) -> bool:
        if self.openai_http2 != "auto":
            return self.openai_http2 == "true"
        return base_url is None or "api.openai.com" in base_url

    @property
    def secrets(self) -> tuple[str, ...]:
        values = [self.openai_api_key, self.supabase_key, self.database_url, self.redis_url]
        values += [self.database_read_url, self.redis_password, self.redis_sentinel_password]
        values += [self.livekit_api_secret, self.supabase_jwt_secret]
        for chain in (self.llm_providers, self.stt_providers, self.tts_providers):
            values += [provider.api_key for provider in chain]
        return tuple(v for v in values if v)

    def public(self) -> dict[str, object]:
        """The settings as a dict with every secret left out or redacted."""
        return {
            f.name: redact(str(v)) if isinstance(v, str) else v
            for f in fields(self)
            if f.repr and (v := getattr(self, f.name)) is not None
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        reader = _Reader(env)
        # the anon key works only beside per-user tokens: RLS shows it no one's rows
        anon_key = reader.optional("SUPABASE_ANON_KEY")
        jwt_secret = reader.optional("SUPABASE_JWT_SECRET")
        service_key = reader.optional("SUPABASE_SERVICE_ROLE_KEY")
        supabase_key = anon_key if anon_key and jwt_secret else service_key
        settings = cls(
            openai_api_key=reader.text("OPENAI_API_KEY", ""),
            openai_base_url=reader.optional("OPENAI_BASE_URL"),
            llm_model=reader.text("LLM_MODEL", cls.llm_model),
            stt_model=reader.text("STT_MODEL", cls.stt_model),
            tts_model=reader.text("TTS_MODEL", cls.tts_model),
            tts_voice=reader.text("TTS_VOICE", cls.tts_voice),
            openai_connect_timeout_s=reader.positive("OPENAI_CONNECT_TIMEOUT_S", float, 5.0),
            openai_read_timeout_s=reader.positive("OPENAI_READ_TIMEOUT_S", float, 15.0),
            openai_max_connections=reader.positive("OPENAI_MAX_CONNECTIONS", int, 50),
            openai_keepalive_s=reader.positive("OPENAI_KEEPALIVE_S", float, 60.0),
            openai_http2=reader.choice("OPENAI_HTTP2", Literal["auto", "true", "false"], "auto"),
            http_max_connections=reader.positive("HTTP_MAX_CONNECTIONS", int, 100),
            http_max_per_host=reader.positive("HTTP_MAX_PER_HOST", int, 30),
            http_keepalive_s=reader.positive("HTTP_KEEPALIVE_S", float, 60.0),
            http_dns_cache_s=reader.positive("HTTP_DNS_CACHE_S", int, 300),
            memory_backend=reader.choice("MEMORY_BACKEND", MemoryBackend, "sqlite"),
            memory_sqlite_path=reader.text("MEMORY_SQLITE_PATH", cls.memory_sqlite_path),
            database_url=reader.optional("DATABASE_URL"),
            database_read_url=reader.optional("DATABASE_READ_URL"),
            memory_replica_max_lag_s=reader.positive("MEMORY_REPLICA_MAX_LAG_S", float, 5.0),
            pg_statement_cache_size=reader.non_negative("PG_STATEMENT_CACHE_SIZE", int, 100),
            supabase_url=reader.optional("SUPABASE_URL"),
            supabase_key=supabase_key,
            supabase_jwt_secret=jwt_secret,
            memory_outbox_path=reader.text("MEMORY_OUTBOX_PATH", cls.memory_outbox_path),
            memory_recall_budget_ms=reader.positive("MEMORY_RECALL_BUDGET_MS", float, 150.0),
            memory_ops_per_second=reader.positive("MEMORY_OPS_PER_SECOND", float, 200.0),
            memory_max_in_flight=reader.positive("MEMORY_MAX_IN_FLIGHT", int, 16),
            user_id=reader.text("USER_ID", cls.user_id),
            participant_wait_s=reader.positive("PARTICIPANT_WAIT_S", float, 60.0),
            agent_name=reader.optional("AGENT_NAME"),
            max_conversations=reader.positive("MAX_CONVERSATIONS", int, 8),
            idle_processes=reader.non_negative("IDLE_PROCESSES", int, 2),
            drain_timeout_s=reader.positive("DRAIN_TIMEOUT_S", float, 3600.0),
            turn_drain_s=reader.positive("TURN_DRAIN_S", float, 5.0),
            redis_url=reader.optional("REDIS_URL"),
            redis_sentinels=reader.host_ports("REDIS_SENTINELS"),
            redis_sentinel_master=reader.optional("REDIS_SENTINEL_MASTER"),
            redis_password=reader.optional("REDIS_PASSWORD"),
            redis_sentinel_password=reader.optional("REDIS_SENTINEL_PASSWORD"),
            greeting_ttl_s=reader.positive("GREETING_TTL_S", float, 300.0),
            greeting_cache_size=reader.positive("GREETING_CACHE_SIZE", int, 100),
            retry_strategy=reader.choice("RETRY_STRATEGY", RetryStrategy, "exponential"),
            retry_max_attempts=reader.positive("RETRY_MAX_ATTEMPTS", int, 3),
            retry_base_s=reader.positive("RETRY_BASE_S", float, 1.0),
            retry_max_delay_s=reader.positive("RETRY_MAX_DELAY_S", float, 60.0),
            retry_jitter=reader.choice("RETRY_JITTER", JitterMode, "full"),
            retry_budget_ratio=reader.non_negative("RETRY_BUDGET_RATIO", float, 0.1),
            call_deadline_s=reader.positive("CALL_DEADLINE_S", float, 8.0),
            breaker_failure_threshold=reader.positive("BREAKER_FAILURE_THRESHOLD", int, 5),
            breaker_reset_s=reader.positive("BREAKER_RESET_S", float, 300.0),
            slow_call_s=reader.positive("SLOW_CALL_S", float, 2.0),
            health_window_s=reader.positive("HEALTH_WINDOW_S", float, 300.0),
            health_tick_s=reader.positive("HEALTH_TICK_S", float, 60.0),
            health_probe_s=reader.positive("HEALTH_PROBE_S", float, 300.0),
            breaker_failure_rate=reader.optional_fraction("BREAKER_FAILURE_RATE"),
            breaker_window=reader.positive("BREAKER_WINDOW", int, 20),
            breaker_min_calls=reader.positive("BREAKER_MIN_CALLS", int, 10),
            slow_call_is_failure=reader.flag("SLOW_CALL_IS_FAILURE"),
            llm_ttft_deadline_s=reader.positive("LLM_TTFT_DEADLINE_S", float, 1.5),
            tts_first_audio_deadline_s=reader.positive("TTS_FIRST_AUDIO_DEADLINE_S", float, 2.0),
            stt_attempt_timeout_s=reader.positive("STT_ATTEMPT_TIMEOUT_S", float, 5.0),
            ack_after_s=reader.non_negative("ACK_AFTER_S", float, 1.0) or None,
            greeting_deadline_s=reader.positive("GREETING_DEADLINE_S", float, 2.0),
            llm_providers=reader.providers("LLM_PROVIDERS", speech=False),
            stt_providers=reader.providers("STT_PROVIDERS"),
            tts_providers=reader.providers("TTS_PROVIDERS"),
            livekit_url=reader.optional("LIVEKIT_URL"),
            livekit_api_key=reader.optional("LIVEKIT_API_KEY"),
            livekit_api_secret=reader.optional("LIVEKIT_API_SECRET"),
            log_level=reader.optional_choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR")),
            prometheus_port=reader.optional_port("PROMETHEUS_PORT"),
            agent_http_port=reader.optional_port("AGENT_HTTP_PORT"),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.memory_backend == "postgres" and not self.database_url:
            raise ConfigError("MEMORY_BACKEND=postgres needs DATABASE_URL.")
        if self.memory_backend == "supabase" and not (self.supabase_url and self.supabase_key):
            raise ConfigError(
                "MEMORY_BACKEND=supabase needs SUPABASE_URL and either SUPABASE_ANON_KEY with "
                "SUPABASE_JWT_SECRET (row-level security per user) or SUPABASE_SERVICE_ROLE_KEY."
            )
        if self.http_max_per_host > self.http_max_connections:
            raise ConfigError("HTTP_MAX_PER_HOST cannot be larger than HTTP_MAX_CONNECTIONS.")
        _check_url("DATABASE_URL", self.database_url, ("postgres", "postgresql"))
        _check_url("DATABASE_READ_URL", self.database_read_url, ("postgres", "postgresql"))
        if self.database_read_url and self.memory_backend != "postgres":
            raise ConfigError("DATABASE_READ_URL needs MEMORY_BACKEND=postgres.")
        _check_url("REDIS_URL", self.redis_url, ("redis", "rediss", "unix"))
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_master):
            raise ConfigError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together.")
        _check_url("SUPABASE_URL", self.supabase_url, ("http", "https"))
        _check_url("OPENAI_BASE_URL", self.openai_base_url, ("http", "https"))


def _check_url(name: str, url: str | None, schemes: tuple[str, ...]) -> None:
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


PROVIDER_FIELDS = {
    "name",
    "kind",
    "base_url",
    "api_key_env",
    "model",
    "voice",
    "priority",
    "max_connections",
    "keepalive_s",
    "folder_id",
    "language",
    "credentials_env",
}


class _Reader:
    """Parses one variable at a time, naming the variable in every error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def host_ports(self, name: str) -> tuple[tuple[str, int], ...]:
        """``host:port,host:port``"""
        value = self.optional(name)
        if value is None:
            return ()
        found = []
        for item in value.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"{name} must be host:port,host:port..., got {item.strip()!r}.")
            found.append((host, int(port)))
        return tuple(found)

    def _number(self, name: str, kind: Callable[[str], T], default: T) -> T:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}.") from None

    def positive(self, name: str, kind: Callable[[str], T], default: T) -> T:
        value = self._number(name, kind, default)
        if not cast(float, value) > 0:
            raise ConfigError(f"{name} must be greater than 0, got {value}.")
        return value

    def non_negative(self, name: str, kind: Callable[[str], T], default: T) -> T:
        value = self._number(name, kind, default)
        if cast(float, value) < 0:
            raise ConfigError(f"{name} cannot be negative, got {value}.")
        return value

    def optional_port(self, name: str) -> int | None:
        if self.optional(name) is None:
            return None
        return self.positive(name, int, 0)

    def optional_fraction(self, name: str) -> float | None:
        if self.optional(name) is None:
            return None
        value = self._number(name, float, 0.0)
        if not 0 < value <= 1:
            raise ConfigError(f"{name} must be a fraction between 0 and 1, got {value}.")
        return value

    def flag(self, name: str) -> bool:
        value = (self.optional(name) or "false").lower()
        if value not in ("1", "true", "yes", "0", "false", "no"):
            raise ConfigError(f"{name} must be true or false, got {value!r}.")
        return value in ("1", "true", "yes")

    def providers(self, name: str, *, speech: bool = True) -> tuple[Provider, ...]:
        """A JSON list of {"name", "kind", "base_url", "api_key_env", "model", "voice",
        "priority", "max_connections", "keepalive_s", "folder_id", "language"} objects, in
        priority order (lower first; ties keep the list's order).

        Keys are named by environment variable, never written into the list itself.
        """
        raw = self.optional(name)
        if raw is None:
            return ()
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{name} must be a JSON list of providers: {exc.msg}.") from None
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{name} must be a non-empty JSON list of providers.")
        chain = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ConfigError(f'{name}[{index}] needs a "name".')
            entry = f"{name}[{index}] ({item['name']})"
            unknown = set(item) - PROVIDER_FIELDS
            if unknown:
                raise ConfigError(f"{entry} has unknown fields: {', '.join(sorted(unknown))}.")
            kind = item.get("kind", "openai")
            kinds = KIND_DEFAULTS if speech else {"openai": KIND_DEFAULTS["openai"]}
            if kind not in kinds:
                raise ConfigError(f"{entry}: kind must be one of {', '.join(kinds)}, got {kind!r}.")
            key_env = item.get("api_key_env")
            api_key = self.env.get(key_env, "") if key_env else ""
            if key_env and not api_key:
                raise ConfigError(f"{entry} names {key_env}, which is not set.")
            if kind == "yandex" and not api_key:
                raise ConfigError(f'{entry}: a yandex provider needs "api_key_env".')
            credentials_env = item.get("credentials_env")
            if credentials_env is not None:
                if kind != "google":
                    raise ConfigError(f'{entry}: "credentials_env" is for kind google.')
                if not self.env.get(credentials_env, "").strip():
                    raise ConfigError(f"{entry} names {credentials_env}, which is not set.")
            default_priority, default_limit = KIND_DEFAULTS[kind]
            numbers = {}
            for field_name, default in (
                ("priority", default_priority),
                ("max_connections", default_limit),
            ):
                value = item.get(field_name, default)
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(f"{entry}: {field_name} must be a whole number.")
                numbers[field_name] = value
            keepalive = item.get("keepalive_s")
            if keepalive is not None and (not isinstance(keepalive, int | float) or keepalive <= 0):
                raise ConfigError(f"{entry}: keepalive_s must be a positive number of seconds.")
            chain.append(
                Provider(
                    name=item["name"],
                    base_url=item.get("base_url"),
                    api_key=api_key,
                    model=item.get("model"),
                    voice=item.get("voice"),
                    kind=kind,
                    priority=numbers["priority"],
                    max_connections=max(numbers["max_connections"], 1),
                    keepalive_s=float(keepalive) if keepalive is not None else None,
                    folder_id=item.get("folder_id"),
                    language=item.get("language"),
                    credentials_env=credentials_env,
                )
            )
        if len({p.name for p in chain}) != len(chain):
            raise ConfigError(f"{name} lists a provider name twice.")
        return tuple(sorted(chain, key=lambda p: p.priority))  # stable: ties keep list order

    def optional_choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        value = self.optional(name)
        if value is None:
            return None
        if value.upper() not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
        return value.upper()

    def choice(self, name: str, options: object, default: str) -> T:  # type: ignore[type-var]
        allowed = get_args(options)
        value = (self.optional(name) or default).lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
        return cast(T, value)
