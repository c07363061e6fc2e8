"""A local server that speaks Google Cloud's real gRPC protocol for the two calls the
provider makes: ``google.cloud.speech.v1.Speech/Recognize`` and
``google.cloud.texttospeech.v1.TextToSpeech/SynthesizeSpeech``.

Built with ``grpcio`` on the message types Google's own packages ship (their proto-plus
classes serialise the wire format), so the official clients, unmodified, talk to it over
HTTP/2 on a loopback port. It checks the request (LINEAR16 audio of the stated rate, text
to speak), answers transcripts and PCM, and can fail a call with a gRPC status or delay it.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
from google.cloud.speech_v1.types import cloud_speech
from google.cloud.texttospeech_v1.types import cloud_tts

from .openai_server import tone_pcm
from .threaded import ThreadedServer, Troubles


class GoogleDouble(ThreadedServer):
    """Faults: ``fail("stt" | "tts", Trouble(status=grpc.StatusCode…, delay_s=…))``."""

    thread_name = "google-double"

    def __init__(self) -> None:
        super().__init__()
        self.transcripts: list[str] = []
        self.default_transcript = "hello"
        self.troubles = Troubles()
        self.fail, self.heal = self.troubles.fail, self.troubles.heal
        self.requests: Counter[str] = Counter()
        self.texts: list[str] = []
        self.audio_bytes: list[int] = []
        self._grpc: grpc.aio.Server | None = None

    @property
    def url(self) -> str:
        """Plain-text HTTP/2 on loopback: the provider's ``base_url``."""
        return f"http://{self.host}:{self.port}"

    async def serve(self) -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "google.cloud.speech.v1.Speech",
                    {
                        "Recognize": grpc.unary_unary_rpc_method_handler(
                            self._recognize,
                            request_deserializer=cloud_speech.RecognizeRequest.deserialize,
                            response_serializer=cloud_speech.RecognizeResponse.serialize,
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "google.cloud.texttospeech.v1.TextToSpeech",
                    {
                        "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                            self._synthesize,
                            request_deserializer=cloud_tts.SynthesizeSpeechRequest.deserialize,
                            response_serializer=cloud_tts.SynthesizeSpeechResponse.serialize,
                        )
                    },
                ),
            )
        )
        self.port = server.add_insecure_port(f"{self.host}:0")
        await server.start()
        self._grpc = server

    async def shutdown(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace=None)

    async def _trouble(self, service: str, context: grpc.aio.ServicerContext) -> None:
        with self._lock:
            self.requests[service] += 1
        trouble = self.troubles.take(service)
        if trouble is None:
            return
        if trouble.delay_s:
            await asyncio.sleep(trouble.delay_s)
        if trouble.status is not None:
            await context.abort(trouble.status, f"injected {trouble.status.name}")

    async def _recognize(
        self, request: cloud_speech.RecognizeRequest, context: grpc.aio.ServicerContext
    ) -> cloud_speech.RecognizeResponse:
        await self._trouble("stt", context)
        config = request.config
        audio = request.audio.content
        encoding = cloud_speech.RecognitionConfig.AudioEncoding.LINEAR16
        if config.encoding != encoding or config.sample_rate_hertz <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "LINEAR16 with its rate")
        if not audio or len(audio) % 2:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "16-bit samples expected")
        with self._lock:
            self.audio_bytes.append(len(audio))
            text = self.transcripts.pop(0) if self.transcripts else self.default_transcript
        alternative = cloud_speech.SpeechRecognitionAlternative(transcript=text, confidence=0.95)
        result = cloud_speech.SpeechRecognitionResult(
            alternatives=[alternative], language_code=config.language_code or "en-US"
        )
        return cloud_speech.RecognizeResponse(results=[result])

    async def _synthesize(
        self, request: cloud_tts.SynthesizeSpeechRequest, context: grpc.aio.ServicerContext
    ) -> cloud_tts.SynthesizeSpeechResponse:
        await self._trouble("tts", context)
        text = request.input.text or request.input.ssml or request.input.markup
        if not text.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "nothing to say")
        rate = request.audio_config.sample_rate_hertz or 24000
        with self._lock:
            self.texts.append(text)
        return cloud_tts.SynthesizeSpeechResponse(audio_content=tone_pcm(0.6, rate, hz=330))
