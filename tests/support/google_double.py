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
import threading
from collections import Counter
from dataclasses import dataclass, field

import grpc
from google.cloud.speech_v1.types import cloud_speech
from google.cloud.texttospeech_v1.types import cloud_tts

from tests.support.openai_server import tone_pcm
from tests.support.threaded import LoopThread


@dataclass
class GrpcTrouble:
    code: grpc.StatusCode | None = None
    delay_s: float = 0.0


@dataclass
class GoogleDouble:
    transcripts: list[str] = field(default_factory=list)
    default_transcript: str = "hello"
    trouble: dict[str, GrpcTrouble] = field(default_factory=dict)  # "stt" / "tts"
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.texts: list[str] = []
        self.audio_bytes: list[int] = []
        self._thread: LoopThread | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def url(self) -> str:
        """Plain-text HTTP/2 on loopback: the provider's ``base_url``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GoogleDouble:
        self._thread = LoopThread("google-double")
        self._thread.run(self._startup())
        return self

    def stop(self) -> None:
        if self._thread is not None and self._server is not None:
            self._thread.run(self._server.stop(grace=None))
            self._thread.stop()
            self._thread = None

    def fail(self, service: str, trouble: GrpcTrouble) -> None:
        with self._lock:
            self.trouble[service] = trouble

    def heal(self) -> None:
        with self._lock:
            self.trouble.clear()

    async def _startup(self) -> None:
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
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server

    async def _trouble(self, service: str, context: grpc.aio.ServicerContext) -> None:
        with self._lock:
            self.requests[service] += 1
            trouble = self.trouble.get(service)
        if trouble is None:
            return
        if trouble.delay_s:
            await asyncio.sleep(trouble.delay_s)
        if trouble.code is not None:
            await context.abort(trouble.code, f"injected {trouble.code.name}")

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
