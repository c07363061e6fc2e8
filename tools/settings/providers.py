"""A failover chain of AI providers, read from a JSON list in one variable
(``LLM_PROVIDERS``, ``STT_PROVIDERS``, ``TTS_PROVIDERS``) and checked whole at start."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pool import ConfigError, check_url

from .credentials import service_account_json

ProviderKind = Literal["openai", "google", "yandex"]

# Speech-to-Text v2 models (livekit's google.models.SpeechModelsV2): the plugin would build
# v2 requests for them, and the pool's Google client speaks v1
GOOGLE_V2_MODELS = ("telephony", "chirp_2", "chirp_3")

# the registry this project grew from: OpenAI, then Google Cloud, then Yandex SpeechKit;
# (priority, max_connections) per kind
KIND_DEFAULTS: dict[ProviderKind, tuple[int, int]] = {
    "openai": (10, 50),
    "google": (20, 100),
    "yandex": (30, 40),
}


@dataclass(frozen=True, kw_only=True)
class Provider:
    """One provider in a failover chain: an OpenAI-compatible endpoint, Google Cloud speech
    or Yandex SpeechKit (the last two for speech only)."""

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
    # the variable holding a Google service account (its JSON, base64 of it, or a path to
    # the file), and the JSON it holds, read and checked at start
    credentials_env: str | None = None
    credentials: str = field(default="", repr=False)
    # an OpenAI-kind STT over the realtime WebSocket; None: STT_STREAMING
    streaming: bool | None = None

    def endpoint(self) -> tuple[object, ...]:
        """What its pool client is built from: the same for every use of its name."""
        return (
            self.kind,
            self.base_url,
            self.api_key,
            self.credentials_env,
            self.folder_id,
            self.max_connections,
            self.keepalive_s,
        )

    def info(self) -> dict[str, object]:
        """What the stats show of it beside its counters."""
        return {
            "kind": self.kind,
            "priority": self.priority,
            "max_connections": self.max_connections,
        }


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
    "streaming",
}


def provider_chain(
    variable: str, raw: str, env: Mapping[str, str], *, speech: bool = True
) -> tuple[Provider, ...]:
    """A JSON list of {"name", "kind", "base_url", "api_key_env", "model", "voice",
    "priority", "max_connections", "keepalive_s", "folder_id", "language",
    "credentials_env", "streaming"} objects, in priority order (lower first; ties keep the
    list's order).

    Keys are named by environment variable, never written into the list itself.
    """
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{variable} must be a JSON list of providers: {exc.msg}.") from None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{variable} must be a non-empty JSON list of providers.")
    chain = [_provider(f"{variable}[{i}]", item, env, speech) for i, item in enumerate(items)]
    if len({p.name for p in chain}) != len(chain):
        raise ConfigError(f"{variable} lists a provider name twice.")
    return tuple(sorted(chain, key=lambda p: p.priority))  # stable: ties keep list order


# the pool's own resources: a provider by one of these names would be handed that client
RESERVED_NAMES = frozenset(
    {"http", "sqlite", "sqlite-cache", "redis", "postgres", "supabase", "memory"}
)
TEXT_FIELDS = (
    "kind", "base_url", "api_key_env", "model", "voice", "folder_id", "language",
    "credentials_env",
)  # fmt: skip
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def _provider(at: str, item: object, env: Mapping[str, str], speech: bool) -> Provider:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ConfigError(f'{at} needs a "name".')
    name = item["name"]
    if not _NAME.fullmatch(name):
        # a dot names a capability of a resource (openai.llm), so names have none
        raise ConfigError(
            f"{at}: the name {name[:40]!r} must be letters, digits, '-' or '_' (at most 63)."
        )
    entry = f"{at} ({name})"
    if name in RESERVED_NAMES:
        raise ConfigError(f"{entry}: {name} is the name of one of the pool's own resources.")
    unknown = set(item) - PROVIDER_FIELDS
    if unknown:
        raise ConfigError(f"{entry} has unknown fields: {', '.join(sorted(unknown))}.")
    for text_field in TEXT_FIELDS:
        if text_field in item and not isinstance(item[text_field], str):
            raise ConfigError(f"{entry}: {text_field} must be a string.")
    if item.get("base_url") is not None:
        check_url(f"{entry} base_url", item["base_url"], ("https", "http"))
    kind = item.get("kind", "openai")
    kinds = KIND_DEFAULTS if speech else {"openai": KIND_DEFAULTS["openai"]}
    if kind not in kinds:
        raise ConfigError(f"{entry}: kind must be one of {', '.join(kinds)}, got {kind!r}.")
    key_env = item.get("api_key_env")
    api_key = env.get(key_env, "") if key_env else ""
    if key_env and not api_key:
        raise ConfigError(f"{entry} names {key_env}, which is not set.")
    if kind == "yandex" and not api_key:
        raise ConfigError(f'{entry}: a yandex provider needs "api_key_env".')
    credentials_env = item.get("credentials_env")
    if credentials_env is not None:
        if kind != "google":
            raise ConfigError(f'{entry}: "credentials_env" is for kind google.')
        if not env.get(credentials_env, "").strip():
            raise ConfigError(f"{entry} names {credentials_env}, which is not set.")
        credentials = service_account_json(credentials_env, env[credentials_env])
    default_priority, default_limit = KIND_DEFAULTS[kind]
    numbers = {}
    for field_name, default in (("priority", default_priority), ("max_connections", default_limit)):
        value = item.get(field_name, default)
        least = 1 if field_name == "max_connections" else 0
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"{entry}: {field_name} must be a whole number, at least {least}.")
        numbers[field_name] = value
    streaming = item.get("streaming")
    if streaming is not None and (not isinstance(streaming, bool) or kind != "openai"):
        raise ConfigError(f"{entry}: streaming is true or false, for kind openai.")
    keepalive = item.get("keepalive_s")
    if keepalive is not None and (not isinstance(keepalive, int | float) or keepalive <= 0):
        raise ConfigError(f"{entry}: keepalive_s must be a positive number of seconds.")
    return Provider(
        name=item["name"],
        base_url=item.get("base_url"),
        api_key=api_key,
        model=item.get("model"),
        voice=item.get("voice"),
        kind=kind,
        priority=numbers["priority"],
        max_connections=numbers["max_connections"],
        keepalive_s=float(keepalive) if keepalive is not None else None,
        folder_id=item.get("folder_id"),
        language=item.get("language"),
        credentials_env=credentials_env,
        credentials=credentials if credentials_env is not None else "",
        streaming=streaming,
    )
