"""A local OpenAI-compatible server for tests and benchmarks.

It speaks the parts of the API the agent uses: ``GET /v1/models``, chat completions
(streaming or not, with tool calls), ``POST /v1/audio/speech``,
``POST /v1/audio/transcriptions`` and realtime transcription over a WebSocket
(``openai_realtime.py``). Speech is transcribed by a real recognizer when one is given
(``recognizer.py``), else as scripted or by the speaker's signature tone. Replies are
scripted per test with :class:`Rule`; faults (status codes, delays, stalls, connection
resets) are injected the same way. It counts requests per path and accepted TCP
connections.

It runs in its own thread and event loop, so a test may block (on a subprocess, a
pseudo-terminal) while the server keeps answering.
"""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import threading
import time
import uuid
import wave
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from .openai_realtime import RealtimeTranscription
from .recognizer import Recognizer
from .threaded import ThreadedServer

Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class Fault:
    """Misbehaviour for one request. Applied before (or while) the reply is sent."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the response headers
    # answer only once the test sets it (at most a minute): "still waiting" without a clock
    hold: threading.Event | None = None
    stall_after_chunks: int | None = None  # stream this many chunks, then stall
    stall_s: float = 30.0
    reset_after_chunks: int | None = None  # stream this many chunks, then drop the socket
    # quote the caller's key in the error, as OpenAI's "Incorrect API key provided: …" does
    echo_key: bool = False


@dataclass
class Rule:
    """When ``when`` matches a chat request, answer with text, tool calls or a fault."""

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fault: Fault | None = None
    when: Predicate = lambda body: True
    times: int | None = 1  # None: every matching request
    path: str = "/chat/completions"  # or "/models", "/audio/speech", "/audio/transcriptions"


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def system_text(body: dict[str, Any]) -> str:
    parts = []
    for message in body.get("messages", []):
        if message.get("role") in ("system", "developer"):
            content = message.get("content")
            if isinstance(content, list):
                parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
            else:
                parts.append(str(content or ""))
    return "\n".join(parts)


def has_tool_result(body: dict[str, Any]) -> bool:
    messages = body.get("messages", [])
    return bool(messages) and messages[-1].get("role") == "tool"


def tone_pcm(seconds: float, rate: int, hz: int = 440) -> bytes:
    """A tone as 16-bit mono PCM: real audio for a speech plugin to play. Vectorised: a
    reply's seconds of speech made sample by sample held the server's loop for tens of
    milliseconds, delaying every other conversation it served."""
    samples = np.arange(int(seconds * rate))
    return (8000 * np.sin(2 * np.pi * hz * samples / rate)).astype("<i2").tobytes()


def tone_wav(seconds: float = 0.3, rate: int = 24000) -> bytes:
    """A short 440 Hz tone in a WAV: what the TTS plugin decodes."""
    frames = tone_pcm(seconds, rate)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


class OpenAIServer(ThreadedServer):
    thread_name = "openai-test-server"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(host, port, ssl_context=ssl_context)
        self.rules: list[Rule] = []
        self.transcripts: list[str] = []
        self.default_transcript = "hello"
        # tone (Hz) mixed under a speaker's voice → what that speaker said
        self.transcripts_by_tone: dict[int, str] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        # hears speech for real (transcriptions and realtime) when set
        self.recognizer: Recognizer | None = None
        # realtime events by type, both ways: session.update, ...delta, ...completed
        self.realtime_events: Counter[str] = Counter()
        # seconds each transcript (realtime or whole) came later than ``delays`` says
        self.transcript_lags_s: list[float] = []
        self.latency_s = 0.0  # added to every response, e.g. to simulate a slow model
        # the agent's speech lasts this long per character of its text (None: 0.3 s a reply)
        self.speech_s_per_char: float | None = None
        # per path suffix, before the answer starts: a provider's own time to first byte
        self.delays: dict[str, float] = {}
        self._speech = tone_wav()
        self._sockets: set[web.WebSocketResponse] = set()

    # -- control, from the test's thread ----------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def script(self, *rules: Rule) -> None:
        with self._lock:
            self.rules.extend(rules)

    def reset(self) -> None:
        with self._lock:
            self.rules.clear()
            self.transcripts.clear()
            self.transcripts_by_tone.clear()
            self.default_transcript = "hello"
            self.requests.clear()
            self.realtime_events.clear()
            self.transcript_lags_s.clear()
            self.recognizer = None
            self.connections = 0
            self.latency_s = 0.0
            self.speech_s_per_char = None

    def count(self, path_suffix: str) -> int:
        with self._lock:
            return sum(1 for path, _ in self.requests if path.endswith(path_suffix))

    def bodies(self, path_suffix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for path, body in self.requests if path.endswith(path_suffix)]

    def paths(self) -> Counter[str]:
        with self._lock:
            return Counter(path for path, _ in self.requests)

    # -- the server, in its own thread ---------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/speech", self._speech_handler)
        app.router.add_post("/v1/audio/transcriptions", self._transcription)
        app.router.add_get("/v1/realtime", self._realtime)
        return app

    def count_realtime(self, kind: str | None) -> None:
        with self._lock:
            self.realtime_events[str(kind)] += 1

    def note_transcript_lag(self, seconds: float) -> None:
        """A transcript later than ``delays`` says by ``seconds``: this stand-in's own
        recognizer and loop on a busy machine, which a provider's servers would not share."""
        with self._lock:
            self.transcript_lags_s.append(seconds)

    def scripted_transcript(self, pcm: bytes, rate: int) -> str:
        """What an utterance said, without a recognizer: the speaker's by tone, or the next
        scripted transcript."""
        with self._lock:
            text = self._by_tone(pcm, rate)
            if text is None:
                text = self.transcripts.pop(0) if self.transcripts else self.default_transcript
        return text

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        body = {"model": request.query.get("model", ""), "intent": request.query.get("intent")}
        _, faulted = await self._receive(request, body)
        if faulted is not None:
            return faulted
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        session = RealtimeTranscription(self, ws)
        self._sockets.add(ws)
        try:
            await session.run()
        finally:
            self._sockets.discard(ws)
            session.close()
        return ws

    async def close_connections(self) -> None:
        # going away: the client sees the provider drop, as in an outage
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server stopping")

    async def _receive(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[Rule | None, web.Response | None]:
        """Record the request; the rule that answers it, and the fault it asked for, if any."""
        self._record(request, body)
        rule = self._take_rule(request.path, body)
        return rule, await self._apply_fault(request, rule.fault if rule else None)

    def _record(self, request: web.Request, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((request.path, body))

    def _take_rule(self, path: str, body: dict[str, Any]) -> Rule | None:
        with self._lock:
            for index, rule in enumerate(self.rules):
                if path.endswith(rule.path) and rule.when(body):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            del self.rules[index]
                    return rule
        return None

    async def _apply_fault(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        delay = self.latency_s + (fault.delay_s if fault else 0.0)
        delay += next((d for p, d in self.delays.items() if request.path.endswith(p)), 0.0)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None and fault.hold is not None:
            for _ in range(6000):
                if fault.hold.is_set():
                    break
                await asyncio.sleep(0.01)
        if fault is None or fault.status is None:
            return None
        message = f"injected {fault.status}"
        if fault.echo_key:
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {key}."
        return web.json_response(
            {"error": {"message": message, "type": "test_fault"}},
            status=fault.status,
            headers=fault.headers,
        )

    async def _models(self, request: web.Request) -> web.Response:
        _, faulted = await self._receive(request, {})
        if faulted is not None:
            return faulted
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "test"}],
            }
        )

    async def _speech_handler(self, request: web.Request) -> web.Response:
        body = await request.json()
        _, faulted = await self._receive(request, body)
        if faulted is not None:
            return faulted
        # as OpenAI does; livekit's TTS warns about every response without one
        request_id = f"req_{uuid.uuid4().hex[:12]}"
        speech = self._speech
        if self.speech_s_per_char is not None:
            # as long as a voice would take to say it, so it can be talked over
            speech = tone_wav(max(0.3, len(str(body.get("input", ""))) * self.speech_s_per_char))
        return web.Response(
            body=speech, content_type="audio/wav", headers={"x-request-id": request_id}
        )

    async def _transcription(self, request: web.Request) -> web.Response:
        form = await request.post()
        audio = form.get("file")
        data = audio.file.read() if hasattr(audio, "file") else b""
        body = {"model": str(form.get("model", "")), "audio_bytes": len(data)}
        _, faulted = await self._receive(request, body)
        if faulted is not None:
            return faulted
        pcm, rate = b"", 24000
        if data:
            with wave.open(io.BytesIO(data)) as source:
                rate, pcm = source.getframerate(), source.readframes(source.getnframes())
        recognizer = self.recognizer
        if recognizer is not None:
            heard = time.perf_counter()
            text = await asyncio.to_thread(recognizer.transcribe, pcm, rate)
            self.note_transcript_lag(time.perf_counter() - heard)
        else:
            text = self.scripted_transcript(pcm, rate)
        return web.json_response({"text": text})

    def _by_tone(self, pcm: bytes, rate: int) -> str | None:
        """The transcript of the speaker whose signature tone is loudest in ``pcm``."""
        if not self.transcripts_by_tone or not pcm:
            return None
        samples = np.frombuffer(pcm, dtype=np.int16)
        spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
        freqs = np.fft.rfftfreq(samples.size, 1 / rate)

        def power(hz: int) -> float:
            return float(spectrum[(freqs > hz - 20) & (freqs < hz + 20)].sum())

        loudest = max(self.transcripts_by_tone, key=power)
        return self.transcripts_by_tone[loudest]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        rule, faulted = await self._receive(request, body)
        if faulted is not None:
            return faulted
        if rule is None:
            rule = Rule(text=f"You said: {last_user_text(body)}")
        if body.get("stream"):
            return await self._stream(request, body, rule)
        return web.json_response(_completion(body, rule))

    async def _stream(
        self, request: web.Request, body: dict[str, Any], rule: Rule
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        fault = rule.fault
        for index, chunk in enumerate(_chunks(body, rule)):
            if fault and fault.reset_after_chunks is not None and index >= fault.reset_after_chunks:
                assert request.transport is not None
                request.transport.abort()  # a connection reset in the middle of the stream
                return response
            if fault and fault.stall_after_chunks is not None and index >= fault.stall_after_chunks:
                await asyncio.sleep(fault.stall_s)
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _completion(body: dict[str, Any], rule: Rule) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": rule.text}
    if rule.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(rule.tool_calls)
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "gpt-4o-mini"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if rule.tool_calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def _chunks(body: dict[str, Any], rule: Rule) -> list[dict[str, Any]]:
    base = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "gpt-4o-mini"),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if rule.text:
        words = rule.text.split(" ")
        chunks += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
    for i, (name, args) in enumerate(rule.tool_calls):
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": f"call_{i}",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)},
                        }
                    ]
                }
            )
        )
    chunks.append(chunk({}, "tool_calls" if rule.tool_calls else "stop"))
    chunks.append(
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )
    return chunks
