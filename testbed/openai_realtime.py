"""OpenAI's realtime transcription over WebSocket, as the local server speaks it.

``GET /v1/realtime?intent=transcription`` upgrades to a WebSocket. The client configures
the session (``session.update``: the model, 24 kHz PCM, and server VAD or none) and streams
``input_audio_buffer.append`` events of base64 PCM. With server VAD, speech is found by its
energy and an utterance ends after ``silence_duration_ms`` of silence; without it, the
client's ``input_audio_buffer.commit`` ends one. The server answers as OpenAI does:
``input_audio_buffer.speech_started`` / ``speech_stopped`` / ``committed``, then
``conversation.item.input_audio_transcription.delta`` events and one ``completed``.

With a recognizer (``OpenAIServer.recognizer``) the words are heard for real, and deltas
carry its partial hypotheses while the person is still speaking; without one, an utterance
gets the scripted or tone-matched transcript when it is committed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import WSMsgType, web

from .recognizer import RecognitionStream

if TYPE_CHECKING:
    from .openai_server import OpenAIServer

RATE = 24000
FRAME_SAMPLES = RATE // 50  # 20 ms
SPEECH_RMS = 80.0  # the quietest stretch of espeak-ng speech is above it; silence decodes near 0
DELTA_EVERY_MS = 200  # a partial hypothesis this often while the person speaks
SCRIPTED_SILENCE_MS = 500


@dataclass
class _Utterance:
    item_id: str
    start_ms: int
    pcm: bytearray = field(default_factory=bytearray)
    stream: RecognitionStream | None = None
    sent: str = ""  # the text the deltas have carried so far
    since_delta_ms: int = 0
    unheard: bytearray = field(default_factory=bytearray)  # not yet fed to the recognizer
    heard: str = ""  # the recognizer's words so far


class RealtimeTranscription:
    """One client's WebSocket session."""

    def __init__(self, server: OpenAIServer, ws: web.WebSocketResponse) -> None:
        self.server = server
        self.ws = ws
        self.server_vad = True
        self.silence_ms = 500
        self.model = ""
        self.received_ms = 0  # audio received so far: the session's clock, as OpenAI's
        self._pending = b""  # bytes short of a whole 20 ms frame
        self._utterance: _Utterance | None = None
        self._silent_ms = 0
        # one thread for this session's recognizer: a decoder stays on the thread it started on
        self._decoding = ThreadPoolExecutor(1, thread_name_prefix="realtime-decoder")

    async def run(self) -> None:
        async for message in self.ws:
            if message.type != WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            kind = event.get("type")
            self.server.count_realtime(kind)
            if kind == "session.update":
                self._configure(event.get("session", {}))
            elif kind == "input_audio_buffer.append":
                await self._append(base64.b64decode(event.get("audio", "")))
            elif kind == "input_audio_buffer.commit":
                await self._commit()

    def _configure(self, session: dict[str, Any]) -> None:
        audio_input = session.get("audio", {}).get("input", {})
        self.model = audio_input.get("transcription", {}).get("model", "")
        vad = audio_input.get("turn_detection")
        self.server_vad = isinstance(vad, dict) and vad.get("type") == "server_vad"
        if self.server_vad:
            self.silence_ms = int(vad.get("silence_duration_ms", 500))
            if self.server.recognizer is None:
                # a scripted transcript answers a whole utterance: espeak-ng's own gaps
                # between words must not cut one into two
                self.silence_ms = max(self.silence_ms, SCRIPTED_SILENCE_MS)

    async def _append(self, pcm: bytes) -> None:
        data = self._pending + pcm
        whole = len(data) - len(data) % (FRAME_SAMPLES * 2)
        self._pending = data[whole:]
        for start in range(0, whole, FRAME_SAMPLES * 2):
            await self._frame(data[start : start + FRAME_SAMPLES * 2])
        if self._utterance is not None:
            await self._hear(self._utterance)

    async def _hear(self, utterance: _Utterance) -> str:
        """Feed the recognizer what it has not heard yet: one hop to its thread per message
        from the client, not per 20 ms frame (the hops cost more than the decoding)."""
        if utterance.stream is not None and utterance.unheard:
            pcm, utterance.unheard = bytes(utterance.unheard), bytearray()
            utterance.heard = await self._decode(utterance.stream.feed, pcm)
        return utterance.heard

    async def _frame(self, frame: bytes) -> None:
        self.received_ms += 20
        samples = np.frombuffer(frame, dtype=np.int16).astype(np.float32)
        voiced = float(np.sqrt(np.mean(samples**2))) > SPEECH_RMS
        utterance = self._utterance
        if utterance is None:
            if not voiced and self.server_vad:
                return
            utterance = self._utterance = self._begin()
            if self.server_vad:
                await self._send(
                    "input_audio_buffer.speech_started",
                    item_id=utterance.item_id,
                    audio_start_ms=utterance.start_ms,
                )
        utterance.pcm += frame
        if utterance.stream is not None:
            utterance.unheard += frame
            utterance.since_delta_ms += 20
            if utterance.since_delta_ms >= DELTA_EVERY_MS:
                utterance.since_delta_ms = 0
                await self._delta(utterance, await self._hear(utterance))
        self._silent_ms = 0 if voiced else self._silent_ms + 20
        if self.server_vad and self._silent_ms >= self.silence_ms:
            await self._send(
                "input_audio_buffer.speech_stopped",
                item_id=utterance.item_id,
                audio_end_ms=self.received_ms - self._silent_ms,
            )
            await self._commit()

    def _begin(self) -> _Utterance:
        recognizer = self.server.recognizer
        return _Utterance(
            item_id=f"item_{uuid.uuid4().hex[:12]}",
            start_ms=self.received_ms,
            stream=recognizer.stream(RATE) if recognizer is not None else None,
        )

    async def _decode(self, step: Callable[..., str], *args: Any) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._decoding, step, *args)

    async def _delta(self, utterance: _Utterance, heard: str, *, final: bool = False) -> None:
        # deltas only append: while the person speaks, the last word heard may still change
        # ("the" becomes "what is"), so only the words before it go out; the rest with the final
        if not final:
            heard = heard.rsplit(" ", 1)[0] if " " in heard else ""
        if heard.startswith(utterance.sent) and len(heard) > len(utterance.sent):
            delta, utterance.sent = heard[len(utterance.sent) :], heard
            await self._send(
                "conversation.item.input_audio_transcription.delta",
                item_id=utterance.item_id,
                content_index=0,
                delta=delta,
            )

    async def _commit(self) -> None:
        utterance, self._utterance = self._utterance, None
        self._silent_ms = 0
        if utterance is None or not utterance.pcm:
            return
        ended = time.perf_counter()
        await self._send("input_audio_buffer.committed", item_id=utterance.item_id)
        if utterance.stream is not None:
            await self._hear(utterance)
            text = await self._decode(utterance.stream.finish)
        else:
            text = self.server.scripted_transcript(bytes(utterance.pcm), RATE)
        # the provider's own time from the end of the utterance to its transcript
        delay_s = self.server.delays.get("/realtime", 0.0)
        await asyncio.sleep(delay_s)
        self.server.note_transcript_lag(time.perf_counter() - ended - delay_s)
        await self._delta(utterance, text, final=True)
        await self._send(
            "conversation.item.input_audio_transcription.completed",
            item_id=utterance.item_id,
            content_index=0,
            transcript=text,
            usage={"type": "tokens", "input_tokens": len(utterance.pcm) // 960, "output_tokens": 1},
        )

    async def _send(self, kind: str, **fields: Any) -> None:
        self.server.count_realtime(kind)
        if not self.ws.closed:
            await self.ws.send_json(
                {"type": kind, "event_id": f"event_{uuid.uuid4().hex}", **fields}
            )

    def close(self) -> None:
        utterance, self._utterance = self._utterance, None
        if utterance is not None and utterance.stream is not None:
            self._decoding.submit(utterance.stream.abandon)
        self._decoding.shutdown(wait=False)
