"""LLM, STT and TTS as priority-ordered provider chains, each provider on its own pool
client, with a breaker and health per provider and capability (``openai.llm``).

livekit's ``FallbackAdapter`` moves to the next provider when one fails, but it measures
a read timeout only: a provider that accepts the request and then stalls leaves the user
in silence. :class:`FirstTokenLLM` fails an attempt that has produced no token by the
deadline, so the adapter moves on within the same turn. The deadline is for failing
over, not for giving up: the last provider of a chain has none, and the turn waits for
it (the person hears an acknowledgement meanwhile, see ``tools.acknowledge``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from livekit.agents import (
    APIConnectOptions,
    APITimeoutError,
    NotGivenOr,
    llm,
    stt,
    tts,
)
from livekit.agents import vad as vad_module
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN
from livekit.plugins import openai as openai_plugin

from pool import ConnectionPool, Meter, ResourceSpec, Settings, openai_spec
from pool.prometheus import TIME_TO_FIRST_TOKEN
from pool.settings import Provider

from .google_speech import google_spec, google_stt, google_tts
from .yandex_speech import STT_URL, TTS_URL, YandexClient, YandexSTT, YandexTTS


def default_provider(settings: Settings) -> Provider:
    return Provider(
        name="openai",
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        max_connections=settings.openai_max_connections,
    )


def provider_specs(pool: ConnectionPool) -> dict[str, ResourceSpec[Any]]:
    """One pool resource per distinct provider across the three chains."""
    settings = pool.settings
    specs: dict[str, ResourceSpec[Any]] = {}
    for chain in (settings.llm_providers, settings.stt_providers, settings.tts_providers):
        for provider in chain or (default_provider(settings),):
            if provider.name in specs:
                continue
            if provider.kind == "yandex":
                specs[provider.name] = yandex_spec(pool, provider)
            elif provider.kind == "google":
                specs[provider.name] = google_spec(provider)
            elif provider.name == "openai" and provider.base_url == settings.openai_base_url:
                spec = openai_spec(settings)
                specs[provider.name] = dataclasses.replace(spec, info=_info(provider))
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
                specs[provider.name] = dataclasses.replace(spec, info=_info(provider))
    return specs


def _info(provider: Provider) -> dict[str, object]:
    return {
        "kind": provider.kind,
        "priority": provider.priority,
        "max_connections": provider.max_connections,
    }


def yandex_spec(pool: ConnectionPool, provider: Provider) -> ResourceSpec[YandexClient]:
    """SpeechKit on the pool's shared aiohttp session: the pool owns the connections, this
    client holds the account and the provider's connection limit."""

    async def open_client(meter: Meter) -> YandexClient:
        return YandexClient(
            session=pool.http,
            api_key=provider.api_key,
            folder_id=provider.folder_id,
            stt_url=(provider.base_url or STT_URL).rstrip("/"),
            tts_url=(provider.base_url or TTS_URL).rstrip("/"),
            limit=asyncio.Semaphore(provider.max_connections),
            language=provider.language or "en-US",
        )

    async def close(client: YandexClient) -> None:
        """Nothing of its own to close: the session is the pool's."""

    return ResourceSpec(provider.name, open_client, close, info=_info(provider))


class FirstTokenLLM(llm.LLM[Any]):
    """Wraps a provider's LLM: no token within ``deadline_s`` fails the attempt, the
    attempt is never retried once output was sent, and time to first token is recorded."""

    def __init__(
        self,
        inner: llm.LLM[Any],
        *,
        provider: str,
        deadline_s: float | None,
        meter: Meter | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.provider_name = provider
        self.deadline_s = deadline_s
        self.meter = meter  # told about stalls, which the HTTP layer sees as successes
        self._label = f"{provider}:{inner.model}"

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.provider_name

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _FirstTokenStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            options={
                "parallel_tool_calls": parallel_tool_calls,
                "tool_choice": tool_choice,
                "extra_kwargs": extra_kwargs,
            },
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
        await super().aclose()


class _FirstTokenStream(llm.LLMStream):
    def __init__(
        self,
        outer: FirstTokenLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
        options: dict[str, Any],
    ) -> None:
        super().__init__(outer, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._outer = outer
        self._options = options
        # once a token reached the user, a retry would make the agent say it twice
        self._retry_on_chunk_sent = False

    async def _run(self) -> None:
        outer = self._outer
        started = time.perf_counter()
        # this stream owns the retries; the provider's own stream makes one attempt
        once = dataclasses.replace(self._conn_options, max_retry=0)
        async with outer.inner.chat(
            chat_ctx=self._chat_ctx, tools=self._tools, conn_options=once, **self._options
        ) as stream:
            chunks = aiter(stream)
            first_token = False
            while True:
                try:
                    if first_token or outer.deadline_s is None:
                        chunk = await anext(chunks)
                    else:
                        remaining = outer.deadline_s - (time.perf_counter() - started)
                        async with asyncio.timeout(max(remaining, 0.0)):
                            chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    assert outer.deadline_s is not None
                    error = APITimeoutError(
                        f"{outer.provider_name} sent no token within {outer.deadline_s:.1f} s"
                    )
                    if outer.meter is not None:
                        outer.meter.stalled(error)
                    raise error from None
                if (
                    not first_token
                    and chunk.delta
                    and (chunk.delta.content or chunk.delta.tool_calls)
                ):
                    first_token = True
                    TIME_TO_FIRST_TOKEN.labels(outer.provider_name).observe(
                        time.perf_counter() - started
                    )
                self._event_ch.send_nowait(chunk)


class FirstAudioTTS(tts.TTS[Any]):
    """Wraps a provider's TTS: no audio within ``deadline_s`` fails the attempt, so the chain
    moves to the next provider within the same sentence instead of leaving the person in
    silence until the read timeout."""

    def __init__(self, inner: tts.TTS[Any], *, provider: str, deadline_s: float, meter: Meter):
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=inner.sample_rate,
            num_channels=inner.num_channels,
        )
        self.inner = inner
        self.provider_name = provider
        self.deadline_s = deadline_s
        self.meter = meter  # told about stalls, which the transport sees as successes

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.provider_name

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _FirstAudioStream(self, input_text=text, conn_options=conn_options)

    async def aclose(self) -> None:
        await self.inner.aclose()
        await super().aclose()


class _FirstAudioStream(tts.ChunkedStream):
    def __init__(self, outer: FirstAudioTTS, *, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=outer, input_text=input_text, conn_options=conn_options)
        self._outer = outer

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        outer = self._outer
        # this stream owns the retries; the provider's own stream makes one attempt
        once = dataclasses.replace(self._conn_options, max_retry=0)
        started = time.perf_counter()
        async with outer.inner.synthesize(self.input_text, conn_options=once) as stream:
            frames = aiter(stream)
            heard = False
            while True:
                try:
                    if heard:
                        audio = await anext(frames)
                    else:
                        remaining = outer.deadline_s - (time.perf_counter() - started)
                        async with asyncio.timeout(max(remaining, 0.0)):
                            audio = await anext(frames)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    error = APITimeoutError(
                        f"{outer.provider_name} sent no audio within {outer.deadline_s:.1f} s"
                    )
                    outer.meter.stalled(error)
                    raise error from None
                if not heard:
                    heard = True
                    output_emitter.initialize(
                        request_id=audio.request_id,
                        sample_rate=audio.frame.sample_rate,
                        num_channels=audio.frame.num_channels,
                        mime_type="audio/pcm",
                    )
                output_emitter.push(audio.frame.data.tobytes())
        if heard:
            output_emitter.flush()


async def _clients(pool: ConnectionPool, chain: tuple[Provider, ...]) -> list[tuple[Provider, Any]]:
    """Each provider of a chain (the OPENAI_* endpoint when empty) with its pool client."""
    settings = pool.settings
    specs = provider_specs(pool)
    return [
        (provider, await pool.acquire(specs[provider.name]))
        for provider in chain or (default_provider(settings),)
    ]


async def build_llm(pool: ConnectionPool) -> llm.LLM[Any]:
    settings = pool.settings
    clients = await _clients(pool, settings.llm_providers)
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


async def build_stt(pool: ConnectionPool, vad: vad_module.VAD) -> stt.STT[Any]:
    settings = pool.settings
    engines: list[stt.STT[Any]] = []
    for provider, client in await _clients(pool, settings.stt_providers):
        if provider.kind == "yandex":
            meter = pool.meter(f"{provider.name}.stt")
            engines.append(YandexSTT(client, meter, language=provider.language))
        elif provider.kind == "google":
            engines.append(google_stt(client, pool.meter(f"{provider.name}.stt"), provider))
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


async def build_tts(pool: ConnectionPool) -> tts.TTS[Any]:
    settings = pool.settings
    chain: list[tuple[Provider, tts.TTS[Any]]] = []
    for provider, client in await _clients(pool, settings.tts_providers):
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
