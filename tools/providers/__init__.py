"""The AI providers: LLM, STT and TTS as failover chains on the pool's clients, first-output
deadlines, and Google Cloud speech and Yandex SpeechKit beside OpenAI-compatible endpoints."""

from __future__ import annotations

from .chains import build_llm, build_stt, build_tts, default_provider, provider_specs
from .first_output import TIME_TO_FIRST_TOKEN, FirstAudioTTS, FirstTokenLLM
from .google import GoogleClients, google_spec, google_stt, google_tts, import_plugin, uses_google
from .yandex import YandexClient, YandexSTT, YandexTTS, yandex_spec

__all__ = [
    "TIME_TO_FIRST_TOKEN",
    "FirstAudioTTS",
    "FirstTokenLLM",
    "GoogleClients",
    "YandexClient",
    "YandexSTT",
    "YandexTTS",
    "build_llm",
    "build_stt",
    "build_tts",
    "default_provider",
    "google_spec",
    "google_stt",
    "google_tts",
    "import_plugin",
    "provider_specs",
    "uses_google",
    "yandex_spec",
]
