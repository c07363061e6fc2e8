"""LLM, STT and TTS as priority-ordered provider chains, each provider on its own pool
client, with a breaker and health per provider and capability (``openai.llm``). Every
provider of a chain but the last gets a deadline for its first output
(``first_output.py``), so a stalled one is left within the turn.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from livekit.agents import llm, stt, tts
from livekit.agents import vad as vad_module
from livekit.plugins import openai as openai_plugin

from pool import ConnectionPool, ResourceSpec, openai_spec

from ..settings import Provider, Settings
from .first_output import FirstAudioTTS, FirstTokenLLM
from .google import google_spec, google_stt, google_tts
from .realtime_stt import RealtimeSTT
from .yandex import YandexSTT, YandexTTS, yandex_spec


def default_provider(settings: Settings) -> Provider:
    return Provider(
        name="openai",
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        max_connections=settings.openai_max_connections,
    )


def provider_specs(pool: ConnectionPool, settings: Settings) -> dict[str, ResourceSpec[Any]]:
    """One pool resource per distinct provider across the three chains."""
    specs: dict[str, ResourceSpec[Any]] = {}
    for chain in (settings.llm_providers, settings.stt_providers, settings.tts_providers):
        for provider in chain or (default_provider(settings),):
            if provider.name in specs:
                continue
            if provider.kind == "yandex":
                specs[provider.name] = yandex_spec(pool, provider)
            elif provider.kind == "google":
                specs[provider.name] = google_spec(provider)
            elif provider.name == "openai":  # the OPENAI_* endpoint (settings checked it)
                spec = openai_spec(settings)
                specs[provider.name] = dataclasses.replace(spec, info=provider.info())
            else:
                tuned = dataclasses.replace(
                    settings,
                    openai_max_connections=provider.max_connections,
                    openai_keepalive_s=provider.keepalive_s or settings.openai_keepalive_s,
                )
                spec = openai_spec(
                    tuned,
                    name=provider.name,
                    base_url=provider.base_url,
                    api_key=provider.api_key or None,
                )
                specs[provider.name] = dataclasses.replace(spec, info=provider.info())
    return specs


async def _clients(
    pool: ConnectionPool, settings: Settings, chain: tuple[Provider, ...]
) -> list[tuple[Provider, Any]]:
    """Each provider of a chain (the OPENAI_* endpoint when empty) with its pool client."""
    specs = provider_specs(pool, settings)
    return [
        (provider, await pool.acquire(specs[provider.name]))
        for provider in chain or (default_provider(settings),)
    ]


async def build_llm(pool: ConnectionPool, settings: Settings) -> llm.LLM[Any]:
    clients = await _clients(pool, settings, settings.llm_providers)
    models: list[llm.LLM[Any]] = [
        FirstTokenLLM(
            openai_plugin.LLM(client=client, model=provider.model or settings.llm_model),
            provider=provider.name,
            # a next provider may answer sooner; the last one is waited for
            deadline_s=settings.llm_ttft_deadline_s if index < len(clients) - 1 else None,
            meter=pool.meter(f"{provider.name}.llm"),
        )
        for index, (provider, client) in enumerate(clients)
    ]
    if len(models) == 1:
        return models[0]
    # each provider is tried once, in order; the breaker and the deadline decide when to move on
    return llm.FallbackAdapter(
        models, attempt_timeout=settings.openai_read_timeout_s, max_retry_per_llm=0
    )


async def build_stt(pool: ConnectionPool, settings: Settings, vad: vad_module.VAD) -> stt.STT[Any]:
    engines: list[stt.STT[Any]] = []
    for provider, client in await _clients(pool, settings, settings.stt_providers):
        if provider.kind == "yandex":
            meter = pool.meter(f"{provider.name}.stt")
            engines.append(YandexSTT(client, meter, language=provider.language))
        elif provider.kind == "google":
            engines.append(google_stt(client, pool.meter(f"{provider.name}.stt"), provider))
        elif settings.stt_streaming if provider.streaming is None else provider.streaming:
            engines.append(
                RealtimeSTT(
                    session=await pool.http(),
                    meter=pool.meter(f"{provider.name}.stt"),
                    client=client,
                    model=provider.model or settings.stt_model,
                    language=provider.language or "en",
                    # the server's end of an utterance closes a transcript segment; when the
                    # person has finished is the session's to decide (turn_taking.py)
                    turn_detection={
                        "type": "server_vad",
                        "silence_duration_ms": settings.stt_server_silence_ms,
                        "prefix_padding_ms": 300,
                    },
                )
            )
        else:
            engines.append(
                openai_plugin.STT(
                    client=client, model=provider.model or settings.stt_model, use_realtime=False
                )
            )
    if len(engines) == 1:
        return engines[0]
    # a stalled recognition moves to the next provider (the utterance itself is not replayed)
    return stt.FallbackAdapter(engines, vad=vad, attempt_timeout=settings.stt_attempt_timeout_s)


async def build_tts(pool: ConnectionPool, settings: Settings) -> tts.TTS[Any]:
    chain: list[tuple[Provider, tts.TTS[Any]]] = []
    for provider, client in await _clients(pool, settings, settings.tts_providers):
        meter = pool.meter(f"{provider.name}.tts")
        voice: tts.TTS[Any]
        if provider.kind == "yandex":
            voice = YandexTTS(client, meter, voice=provider.voice, language=provider.language)
        elif provider.kind == "google":
            voice = google_tts(client, meter, provider)
        else:
            voice = openai_plugin.TTS(
                client=client,
                model=provider.model or settings.tts_model,
                voice=provider.voice or settings.tts_voice,
            )
        chain.append((provider, voice))
    if len(chain) == 1:
        return chain[0][1]
    # a next provider may answer sooner; the last one is waited for
    voices: list[tts.TTS[Any]] = [
        FirstAudioTTS(
            voice,
            provider=provider.name,
            deadline_s=settings.tts_first_audio_deadline_s,
            meter=pool.meter(f"{provider.name}.tts"),
        )
        for provider, voice in chain[:-1]
    ]
    return tts.FallbackAdapter([*voices, chain[-1][1]])
