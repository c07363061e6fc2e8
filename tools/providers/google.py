"""Google Cloud Speech-to-Text and Text-to-Speech through the official
``livekit-plugins-google``, on gRPC clients the pool owns.

The plugin builds its own clients for Google's fixed endpoints; here the pool builds them
(credentials from a service-account file or JSON in the variable ``credentials_env`` names,
and ``base_url`` as the endpoint, e.g. a regional one) and the plugin is handed them, so
the pool meters, guards and closes them like every other client. Every call goes through
the provider's capability meter (``google.stt``, ``google.tts``: metrics, breaker, health);
an open breaker answers as Google's ``ServiceUnavailable``, which the plugin reports as a
retryable ``APIStatusError``, so the chain moves on without a request.

``livekit.plugins.google`` registers itself on import, which livekit allows only on a
process's main thread: ``agent.py`` imports it there when a provider of kind google is
configured (:func:`import_plugin`), and this module imports it lazily.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from livekit.agents import stt, tts

from pool import CircuitOpenError, Meter, ResourceSpec, cancel_and_wait

from ..settings import Provider, Settings, service_account_json

SPEECH_ENDPOINT = "speech.googleapis.com"
TTS_ENDPOINT = "texttospeech.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def uses_google(settings: Settings) -> bool:
    return any(p.kind == "google" for p in (*settings.stt_providers, *settings.tts_providers))


def import_plugin() -> None:
    """Import (and so register) the plugin on the calling thread, the process's main one."""
    import livekit.plugins.google  # noqa: F401


# an old channel's calls in flight get this long to finish after a reset
RETIRE_AFTER_S = 30.0


@dataclass
class GoogleClients:
    """The handle a session's Google plugins hold: they read ``speech`` and ``tts`` at each
    call, so a reset swaps new clients (new channels) in behind it."""

    speech: Any  # google.cloud.speech_v1.SpeechAsyncClient
    tts: Any  # google.cloud.texttospeech.TextToSpeechAsyncClient
    project_id: str | None
    credentials: Any  # google.auth credentials, the ones the clients were built with
    build: Callable[[], tuple[Any, Any]]
    retiring: set[asyncio.Task[None]] = field(default_factory=set)

    def reset(self) -> None:
        old = (self.speech, self.tts)
        self.speech, self.tts = self.build()
        task = asyncio.create_task(self._retire(*old), name="google-retire-channels")
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)

    async def _retire(self, speech: Any, tts: Any) -> None:
        try:
            await asyncio.sleep(RETIRE_AFTER_S)
        finally:
            await asyncio.shield(_close(speech, tts))

    async def aclose(self) -> None:
        await cancel_and_wait(list(self.retiring))
        await _close(self.speech, self.tts)


async def _close(speech: Any, tts: Any) -> None:
    await speech.transport.close()
    await tts.transport.close()


def _credentials(provider: Provider) -> tuple[Any, str | None]:
    """The service account named by ``credentials_env`` (its JSON, or a path to it); none for
    a plain-text loopback endpoint, which is a local test server."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.oauth2 import service_account

    if provider.credentials_env is None:
        if _insecure(provider):
            return AnonymousCredentials(), None  # type: ignore[no-untyped-call]
        credentials, project = google.auth.default(scopes=SCOPES)  # type: ignore[no-untyped-call]
        return credentials, project
    # read and checked at start, when the provider came from the settings
    text = provider.credentials or service_account_json(
        provider.credentials_env, os.environ.get(provider.credentials_env, "")
    )
    info = json.loads(text)
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        info, scopes=SCOPES
    )
    return credentials, info.get("project_id")


def _insecure(provider: Provider) -> bool:
    return bool(provider.base_url and provider.base_url.startswith("http://"))


def _endpoint(provider: Provider, default: str) -> str:
    if not provider.base_url:
        return default
    parts = urlsplit(provider.base_url if "//" in provider.base_url else f"//{provider.base_url}")
    return parts.netloc


def google_spec(provider: Provider) -> ResourceSpec[GoogleClients]:
    async def open_clients(meter: Meter) -> GoogleClients:
        import grpc
        from google.api_core.client_options import ClientOptions
        from google.cloud import texttospeech
        from google.cloud.speech_v1 import SpeechAsyncClient
        from google.cloud.speech_v1.services.speech.transports import SpeechGrpcAsyncIOTransport
        from google.cloud.texttospeech_v1.services.text_to_speech.transports import (
            TextToSpeechGrpcAsyncIOTransport,
        )

        credentials, project = _credentials(provider)
        speech_at = _endpoint(provider, SPEECH_ENDPOINT)
        tts_at = _endpoint(provider, TTS_ENDPOINT)

        def build() -> tuple[Any, Any]:
            if _insecure(provider):
                speech = SpeechAsyncClient(
                    transport=SpeechGrpcAsyncIOTransport(
                        channel=grpc.aio.insecure_channel(speech_at)
                    )
                )
                voice = texttospeech.TextToSpeechAsyncClient(
                    transport=TextToSpeechGrpcAsyncIOTransport(
                        channel=grpc.aio.insecure_channel(tts_at)
                    )
                )
                return speech, voice
            speech = SpeechAsyncClient(
                credentials=credentials, client_options=ClientOptions(api_endpoint=speech_at)
            )
            voice = texttospeech.TextToSpeechAsyncClient(
                credentials=credentials, client_options=ClientOptions(api_endpoint=tts_at)
            )
            return speech, voice

        return GoogleClients(*build(), project, credentials, build)

    async def close(clients: GoogleClients) -> None:
        await clients.aclose()

    async def reset(clients: GoogleClients) -> None:
        clients.reset()

    return ResourceSpec(provider.name, open_clients, close, info=provider.info(), reset=reset)


# the plugin's client factories, overridden to hand it the pool's clients;
# tests/test_upstream_names.py fails when livekit renames one
PRIVATE_API = {"STT": "_create_client", "TTS": "_ensure_client"}


class _Metered:
    """A Google client whose calls go through a capability meter; an open breaker answers
    as Google's ``ServiceUnavailable``."""

    def __init__(self, client: Any, meter: Meter) -> None:
        self._client = client
        self._meter = meter

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in ("recognize", "synthesize_speech"):
            return method
        return self._guarded(method)

    def _guarded(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        from google.api_core.exceptions import ServiceUnavailable

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                async with self._meter.guard():
                    return await method(*args, **kwargs)
            except CircuitOpenError as exc:
                raise ServiceUnavailable(str(exc)) from None  # type: ignore[no-untyped-call]

        return call


def google_stt(clients: GoogleClients, meter: Meter, provider: Provider) -> stt.STT[Any]:
    from livekit.plugins import google

    class PooledSTT(google.STT):  # type: ignore[misc]
        # the plugin's own client factory, which would dial Google's fixed endpoint
        async def _create_client(self, timeout: float) -> Any:
            return _Metered(clients.speech, meter)

    # one request per utterance, cut by the session's VAD, as with the other providers
    return PooledSTT(  # type: ignore[no-any-return]
        languages=provider.language or "en-US",
        model=provider.model or "latest_long",
        use_streaming=False,
        detect_language=False,
        project=clients.project_id or "local",
        # given so the plugin does not look for credentials of its own; its client is ours
        credentials=clients.credentials,
    )


def google_tts(clients: GoogleClients, meter: Meter, provider: Provider) -> tts.TTS[Any]:
    from livekit.plugins import google

    class PooledTTS(google.TTS):  # type: ignore[misc]
        # the plugin's own client factory, which would dial Google's fixed endpoint
        def _ensure_client(self) -> Any:
            return _Metered(clients.tts, meter)

    options: dict[str, Any] = {"voice_name": provider.voice} if provider.voice else {}
    return PooledTTS(  # type: ignore[no-any-return]
        language=provider.language or "en-US",
        use_streaming=False,
        credentials=clients.credentials,
        **options,
    )
