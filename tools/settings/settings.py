"""The agent's settings: the pool's own (:class:`pool.PoolSettings`) plus memory, AI
providers, the worker and the conversation, read once from the environment (and ``.env``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pool import ConfigError, PoolSettings, check_url, number, read_env, redact, setting

from .providers import GOOGLE_V2_MODELS, Provider, provider_chain

MemoryBackend = Literal["sqlite", "postgres", "supabase"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
# the end of a turn from what was said, from silence alone, or from livekit's bundled audio
# end-of-turn model (turn-detector-v1-mini)
TurnDetection = Literal["transcript", "vad", "audio"]


def _ack_after(variable: str, raw: str, env: Mapping[str, str]) -> float | None:
    return number(variable, raw, float, "non_negative") or None  # 0: never


def _llm_chain(variable: str, raw: str, env: Mapping[str, str]) -> tuple[Provider, ...]:
    return provider_chain(variable, raw, env, speech=False)


def _speech_chain(variable: str, raw: str, env: Mapping[str, str]) -> tuple[Provider, ...]:
    return provider_chain(variable, raw, env, speech=True)


@dataclass(frozen=True, kw_only=True)
class Settings(PoolSettings):
    # models of the default endpoint (OPENAI_*), and of a provider that names none
    llm_model: str = setting("LLM_MODEL", "gpt-4o-mini")
    stt_model: str = setting("STT_MODEL", "gpt-4o-mini-transcribe")
    tts_model: str = setting("TTS_MODEL", "gpt-4o-mini-tts")
    tts_voice: str = setting("TTS_VOICE", "ash")

    # memory
    memory_backend: MemoryBackend = setting("MEMORY_BACKEND", "sqlite")
    # several hosts (libpq style, h1:5432,h2:5432): writes go to whichever is the primary
    database_url: str | None = setting("DATABASE_URL", secret=True)
    # a replica for session-start recall; the primary answers when it lags or is down
    database_read_url: str | None = setting("DATABASE_READ_URL", secret=True)
    memory_replica_max_lag_s: float = setting("MEMORY_REPLICA_MAX_LAG_S", 5.0, check="positive")
    # 0 for Supabase's transaction-mode pooler (port 6543), which breaks prepared statements
    pg_statement_cache_size: int = setting("PG_STATEMENT_CACHE_SIZE", 100, check="non_negative")
    supabase_url: str | None = setting("SUPABASE_URL")
    # the service-role key, or the anon key when per-user tokens are signed (from_env)
    supabase_key: str | None = setting("SUPABASE_SERVICE_ROLE_KEY", secret=True)
    # signs a token per user, so row-level security holds on the agent's own requests
    supabase_jwt_secret: str | None = setting("SUPABASE_JWT_SECRET", secret=True)
    memory_outbox_path: str = setting("MEMORY_OUTBOX_PATH", "data/outbox.db")
    memory_recall_budget_ms: float = setting("MEMORY_RECALL_BUDGET_MS", 150.0, check="positive")
    # what the user's memories may take of the prompt, in (estimated) tokens
    memory_prompt_tokens: int = setting("MEMORY_PROMPT_TOKENS", 2000, check="positive")
    memory_ops_per_second: float = setting("MEMORY_OPS_PER_SECOND", 200.0, check="positive")
    memory_max_in_flight: int = setting("MEMORY_MAX_IN_FLIGHT", 16, check="positive")

    # failover chains, highest priority first; empty: the one OPENAI_* endpoint
    llm_providers: tuple[Provider, ...] = setting("LLM_PROVIDERS", (), parse=_llm_chain)
    stt_providers: tuple[Provider, ...] = setting("STT_PROVIDERS", (), parse=_speech_chain)
    tts_providers: tuple[Provider, ...] = setting("TTS_PROVIDERS", (), parse=_speech_chain)
    llm_ttft_deadline_s: float = setting("LLM_TTFT_DEADLINE_S", 1.5, check="positive")
    # in a speech chain, a provider (all but the last) that sends no audio within this fails
    # the sentence over to the next; and a recognition taking longer than this, the utterance
    tts_first_audio_deadline_s: float = setting("TTS_FIRST_AUDIO_DEADLINE_S", 2.0, check="positive")
    stt_attempt_timeout_s: float = setting("STT_ATTEMPT_TIMEOUT_S", 5.0, check="positive")
    # OpenAI-kind speech recognition over the realtime WebSocket (a provider's "streaming"
    # overrides it): the words are heard while the person speaks
    stt_streaming: bool = setting("STT_STREAMING", True)
    # the realtime server's own end of an utterance; it only closes a transcript segment
    stt_server_silence_ms: int = setting("STT_SERVER_SILENCE_MS", 200, check="positive")

    # turn-taking
    turn_detection: TurnDetection = setting("TURN_DETECTION", "transcript")
    # the wait after the last speech for a turn that sounds finished...
    turn_min_delay_s: float = setting("TURN_MIN_DELAY_S", 0.25, check="non_negative")
    # ...and at most, for one that does not ("a table for ..."): a pause that long ends it
    turn_max_delay_s: float = setting("TURN_MAX_DELAY_S", 2.0, check="positive")
    # the VAD's silence before it says speech ended; the words decide whether the turn did
    vad_silence_s: float = setting("VAD_SILENCE_S", 0.3, check="positive")
    # synthesize the first sentence of a reply before the turn is committed
    preemptive_tts: bool = setting("PREEMPTIVE_TTS", True)

    # the conversation
    user_id: str = setting("USER_ID", "console-user")  # who you are in the console
    # a person hears "One moment." when the model has said nothing by then (0: never)
    # 1.0 s after the request is ~1.8 s after the person stopped speaking (the VAD's 0.55 s
    # end-of-speech silence, STT), within the 2 s a pause starts to feel like no answer
    ack_after_s: float | None = setting("ACK_AFTER_S", 1.0, parse=_ack_after)
    # the personal greeting is waited for this long, then the generic one is said
    greeting_deadline_s: float = setting("GREETING_DEADLINE_S", 2.0, check="positive")
    # how long a room job waits for its person before it ends
    participant_wait_s: float = setting("PARTICIPANT_WAIT_S", 60.0, check="positive")
    # a job being ended lets the reply in flight finish for this long
    turn_drain_s: float = setting("TURN_DRAIN_S", 5.0, check="positive")
    # a person back within this long of a conversation that ended without a goodbye (its
    # LiveKit node or worker was lost) is greeted as someone the agent was just talking to
    resume_window_s: float = setting("RESUME_WINDOW_S", 600.0, check="positive")

    # the worker: a LiveKit server or LiveKit Cloud, for `start` and `dev`
    livekit_url: str | None = setting("LIVEKIT_URL")
    livekit_api_key: str | None = setting("LIVEKIT_API_KEY")
    livekit_api_secret: str | None = setting("LIVEKIT_API_SECRET", secret=True)
    # explicit dispatch: rooms get this agent only when they ask for it by this name
    agent_name: str | None = setting("AGENT_NAME")
    # conversations one worker takes at once, and job processes kept ready for them
    max_conversations: int = setting("MAX_CONVERSATIONS", 8, check="positive")
    # livekit-server's `agents.target_load` (its default): it sends a worker no room once
    # the load the worker reports reaches it, so a full worker reports exactly this
    server_target_load: float = setting("LIVEKIT_TARGET_LOAD", 0.7, check="fraction")
    idle_processes: int = setting("IDLE_PROCESSES", 2, check="non_negative")
    # on SIGTERM, conversations may go on this long before their jobs are ended
    drain_timeout_s: float = setting("DRAIN_TIMEOUT_S", 3600.0, check="positive")
    # unset: WARNING for `console` (its first screen is the greeting and a prompt), INFO
    # for a worker
    log_level: LogLevel | None = setting("LOG_LEVEL")
    prometheus_port: int | None = setting("PROMETHEUS_PORT", check="port")
    # the worker's health-check HTTP server; livekit's default is 8081 in production
    agent_http_port: int | None = setting("AGENT_HTTP_PORT", check="port")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        import os

        env = os.environ if env is None else env
        given: dict[str, Any] = {}
        # the anon key works only beside per-user tokens: RLS shows it no one's rows
        anon = env.get("SUPABASE_ANON_KEY", "").strip()
        if anon and env.get("SUPABASE_JWT_SECRET", "").strip():
            given["supabase_key"] = anon
        settings = read_env(cls, env, **given)
        settings.validate()
        return settings

    @property
    def secrets(self) -> tuple[str, ...]:
        chains = (self.llm_providers, self.stt_providers, self.tts_providers)
        keys = [provider.api_key for chain in chains for provider in chain]
        return (*super().secrets, *(key for key in keys if key))

    def validate(self) -> None:
        super().validate()
        if self.turn_min_delay_s > self.turn_max_delay_s:
            raise ConfigError("TURN_MIN_DELAY_S cannot be larger than TURN_MAX_DELAY_S.")
        self._check_provider_names()
        for provider in self.stt_providers:
            if provider.kind == "google" and provider.model in GOOGLE_V2_MODELS:
                raise ConfigError(
                    f"STT_PROVIDERS ({provider.name}): {provider.model} is a Speech-to-Text v2 "
                    "model, and this agent's Google client speaks v1; use latest_long, "
                    "latest_short, long, short or chirp."
                )
        if self.memory_backend == "postgres" and not self.database_url:
            raise ConfigError("MEMORY_BACKEND=postgres needs DATABASE_URL.")
        if self.memory_backend == "supabase" and not (self.supabase_url and self.supabase_key):
            raise ConfigError(
                "MEMORY_BACKEND=supabase needs SUPABASE_URL and either SUPABASE_ANON_KEY with "
                "SUPABASE_JWT_SECRET (row-level security per user) or SUPABASE_SERVICE_ROLE_KEY."
            )
        check_url("DATABASE_URL", self.database_url, ("postgres", "postgresql"))
        check_url("DATABASE_READ_URL", self.database_read_url, ("postgres", "postgresql"))
        if self.database_read_url and self.memory_backend != "postgres":
            raise ConfigError("DATABASE_READ_URL needs MEMORY_BACKEND=postgres.")
        check_url("SUPABASE_URL", self.supabase_url, ("http", "https"))

    def _check_provider_names(self) -> None:
        """A name is one pool resource, one client: every provider by that name, in every
        chain, must be the same endpoint, and ``openai`` is the OPENAI_* endpoint's."""
        chains = {"LLM_PROVIDERS": self.llm_providers, "STT_PROVIDERS": self.stt_providers}
        chains["TTS_PROVIDERS"] = self.tts_providers
        seen: dict[str, tuple[str, tuple[object, ...]]] = {}
        for variable, chain in chains.items():
            for provider in chain:
                endpoint = provider.endpoint()
                if provider.name == "openai" and (
                    provider.kind != "openai"
                    or provider.base_url not in (None, self.openai_base_url)
                    or provider.api_key not in ("", self.openai_api_key)
                ):
                    raise ConfigError(
                        f"{variable} (openai): the name openai is the OPENAI_* endpoint's; "
                        "give a provider with its own endpoint or key a name of its own."
                    )
                first = seen.setdefault(provider.name, (variable, endpoint))
                if first[1] != endpoint:
                    raise ConfigError(
                        f"{variable} ({provider.name}): {first[0]} has a provider of that name "
                        "with another endpoint, key or limits; one name is one endpoint."
                    )

    def require_openai(self) -> None:
        """Refuse to start a conversation with no way to reach a model."""
        if not self.openai_api_key and not self.openai_base_url:
            raise ConfigError(
                "Set OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible "
                "server) in the environment or in .env."
            )

    def require_livekit(self) -> None:
        """A worker needs a server to register with: say so in one line, not a traceback."""
        named = (
            ("LIVEKIT_URL", self.livekit_url),
            ("LIVEKIT_API_KEY", self.livekit_api_key),
            ("LIVEKIT_API_SECRET", self.livekit_api_secret),
        )
        missing = [name for name, value in named if not value]
        if missing or self.livekit_url is None:
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
