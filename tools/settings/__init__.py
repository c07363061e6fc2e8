"""The agent's settings: the pool's own plus memory, AI providers, the worker and the
conversation, read once from the environment (and ``.env``) and checked whole at start."""

from __future__ import annotations

from .credentials import service_account_json
from .providers import GOOGLE_V2_MODELS, KIND_DEFAULTS, Provider, ProviderKind, provider_chain
from .settings import LogLevel, MemoryBackend, Settings, TurnDetection

__all__ = [
    "GOOGLE_V2_MODELS",
    "KIND_DEFAULTS",
    "LogLevel",
    "MemoryBackend",
    "Provider",
    "ProviderKind",
    "Settings",
    "TurnDetection",
    "provider_chain",
    "service_account_json",
]
