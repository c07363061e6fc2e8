"""Yandex SpeechKit as livekit STT and TTS, over its v1 REST API, on the pool's aiohttp session.

- STT: ``POST {stt}/speech/v1/stt:recognize`` with the utterance as raw LPCM (16-bit, mono,
  16 kHz) and ``lang``, ``format=lpcm``, ``sampleRateHertz`` (and ``folderId``) in the query;
  the answer is ``{"result": "text"}``. Not streaming: with a VAD, livekit cuts utterances.
- TTS: ``POST {tts}/speech/v1/tts:synthesize`` with a form (``text``, ``lang``, ``voice``,
  ``format=lpcm``, ``sampleRateHertz``); the answer is the raw LPCM, pushed as it arrives.

Every request carries ``Authorization: Api-Key …``, goes through the provider's capability
meter (``yandex.stt``, ``yandex.tts``: metrics, breaker, health) and waits for a slot of the
provider's connection limit. SpeechKit's errors become livekit's ``APIStatusError`` (with the
HTTP status, so 4xx is not retried and 5xx is) and ``APIConnectionError``/``APITimeoutError``,
which is what ``FallbackAdapter`` needs to move on to the next provider.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from livekit import rtc
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    LanguageCode,
    stt,
    tts,
)
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer

from pool import CircuitOpenError, ConnectionPool, Meter, ResourceSpec, redact

from ..settings import Provider

STT_URL = "https://stt.api.cloud.yandex.net"
TTS_URL = "https://tts.api.cloud.yandex.net"
STT_RATE = 16000  # SpeechKit takes 8, 16 or 48 kHz LPCM
TTS_RATE = 24000
DEFAULT_LANGUAGE = "en-US"
DEFAULT_VOICE = "john"


@dataclass
class YandexClient:
    """One SpeechKit account: its key, the pool's shared HTTP session and a connection limit
    shared by its STT and TTS."""

    session: Callable[[], Awaitable[aiohttp.ClientSession]]
    api_key: str = field(repr=False)
    folder_id: str | None
    stt_url: str
    tts_url: str
    limit: asyncio.Semaphore
    language: str = DEFAULT_LANGUAGE

    @asynccontextmanager
    async def request(
        self,
        meter: Meter,
        method: str,
        url: str,
        conn_options: APIConnectOptions,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A metered, breaker-guarded request within the connection limit; errors mapped."""
        session = await self.session()
        headers = {"Authorization": f"Api-Key {self.api_key}"}
        # no byte for the attempt's timeout is a stall: fail, so the chain can move on
        timeout = aiohttp.ClientTimeout(
            total=30, sock_connect=conn_options.timeout, sock_read=conn_options.timeout
        )
        try:
            async with (
                self.limit,
                meter.guard(),
                session.request(method, url, headers=headers, timeout=timeout, **kwargs) as resp,
            ):
                if resp.status >= 400:
                    raise await _status_error(resp)
                yield resp
        except CircuitOpenError as exc:
            raise APIConnectionError(f"{meter.name}: {exc}", retryable=False) from None
        except TimeoutError:
            raise APITimeoutError(f"{meter.name} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise APIConnectionError(f"{meter.name}: {redact(str(exc))}") from exc


async def _status_error(resp: aiohttp.ClientResponse) -> APIStatusError:
    """SpeechKit answers errors as {"error_code": ..., "error_message": ...}."""
    try:
        body: Any = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        body = None
    message = f"SpeechKit answered {resp.status}"
    if isinstance(body, dict) and body.get("error_message"):
        message = f"{message}: {body.get('error_code', '')} {body['error_message']}".strip()
    return APIStatusError(
        redact(message),
        status_code=resp.status,
        request_id=resp.headers.get("x-request-id"),
        body=body,
    )


class _SpeechKit:
    """What livekit's metrics and traces call these plugins."""

    @property
    def model(self) -> str:
        return "speechkit-v1"

    @property
    def provider(self) -> str:
        return "Yandex SpeechKit"


class YandexSTT(_SpeechKit, stt.STT[Any]):
    def __init__(self, client: YandexClient, meter: Meter, *, language: str | None = None):
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._client = client
        self._meter = meter
        self._language = language or client.language

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str | list[str]] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        lang = self._language
        if isinstance(language, str):
            lang = language
        pcm = _lpcm(rtc.combine_audio_frames(buffer), STT_RATE)
        params = {"lang": lang, "format": "lpcm", "sampleRateHertz": str(STT_RATE)}
        if self._client.folder_id:
            params["folderId"] = self._client.folder_id
        url = f"{self._client.stt_url}/speech/v1/stt:recognize"
        async with self._client.request(
            self._meter, "POST", url, conn_options, params=params, data=pcm
        ) as resp:
            body = await resp.json(content_type=None)
        text = body.get("result", "") if isinstance(body, dict) else ""
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(text=text, language=LanguageCode(lang))],
        )


def _lpcm(frame: rtc.AudioFrame, rate: int) -> bytes:
    """16-bit mono PCM at ``rate``, as SpeechKit takes it (a session's input is mono)."""
    if frame.num_channels != 1:
        raise ValueError(f"SpeechKit takes mono audio, got {frame.num_channels} channels")
    if frame.sample_rate == rate:
        return bytes(frame.data)
    resampler = rtc.AudioResampler(input_rate=frame.sample_rate, output_rate=rate)
    frames = resampler.push(frame) + resampler.flush()
    return b"".join(bytes(f.data) for f in frames)


class YandexTTS(_SpeechKit, tts.TTS[Any]):
    def __init__(
        self,
        client: YandexClient,
        meter: Meter,
        *,
        voice: str | None = None,
        language: str | None = None,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=TTS_RATE,
            num_channels=1,
        )
        self._client = client
        self._meter = meter
        self._voice = voice or DEFAULT_VOICE
        self._language = language or client.language

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _Synthesis(tts=self, input_text=text, conn_options=conn_options)


class _Synthesis(tts.ChunkedStream):
    def __init__(self, *, tts: YandexTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._yandex = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        voice = self._yandex
        form = {
            "text": self.input_text,
            "lang": voice._language,
            "voice": voice._voice,
            "format": "lpcm",
            "sampleRateHertz": str(TTS_RATE),
        }
        if voice._client.folder_id:
            form["folderId"] = voice._client.folder_id
        url = f"{voice._client.tts_url}/speech/v1/tts:synthesize"
        async with voice._client.request(
            voice._meter, "POST", url, self._conn_options, data=form
        ) as resp:
            output_emitter.initialize(
                request_id=resp.headers.get("x-request-id") or uuid.uuid4().hex,
                sample_rate=TTS_RATE,
                num_channels=1,
                mime_type="audio/pcm",
            )
            async for chunk in resp.content.iter_chunked(4096):
                output_emitter.push(chunk)
            output_emitter.flush()


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

    return ResourceSpec(provider.name, open_client, close, info=provider.info())
