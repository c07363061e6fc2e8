"""A contract double of Yandex SpeechKit's v1 REST API: ``stt:recognize`` and
``tts:synthesize``, as SpeechKit documents them.

It checks what the plugin must send (``Authorization: Api-Key …``, ``folderId``,
``format=lpcm``, a supported ``sampleRateHertz``, a body of that many 16-bit samples) and
answers with SpeechKit's shapes: ``{"result": …}`` for a recognition, raw LPCM for a
synthesis, ``{"error_code", "error_message"}`` with the HTTP status for an error. Faults:
a status, a delay before the answer. It counts requests and TCP connections, and the most
requests it ever had in flight at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web

from .openai_server import tone_pcm
from .threaded import ThreadedServer, Troubles

RATES = {"8000", "16000", "48000"}
TTS_RATES = {"8000", "16000", "22050", "24000", "48000"}


class YandexDouble(ThreadedServer):
    """Faults: ``fail("stt" | "tts", Trouble(status=503, delay_s=…, times=…))``."""

    thread_name = "yandex-double"

    def __init__(self, api_key: str, folder_id: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.folder_id = folder_id
        self.transcripts: list[str] = []
        self.default_transcript = "hello"
        self.troubles = Troubles()
        self.fail, self.heal = self.troubles.fail, self.troubles.heal
        self.requests: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self.texts: list[str] = []
        self.audio_bytes: list[int] = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/speech/v1/stt:recognize", self._recognize)
        app.router.add_post("/speech/v1/tts:synthesize", self._synthesize)
        return app

    # -- the API ---------------------------------------------------------------------------

    def _check(self, request: web.Request, params: Any) -> web.Response | None:
        if request.headers.get("Authorization") != f"Api-Key {self.api_key}":
            return _error(401, "UNAUTHORIZED", "The token is invalid")
        if self.folder_id is not None and params.get("folderId") != self.folder_id:
            return _error(400, "BAD_REQUEST", "folderId is missing or wrong")
        if params.get("format") != "lpcm":
            return _error(400, "BAD_REQUEST", "format must be lpcm (the contract)")
        return None

    async def _trouble(self, service: str) -> web.Response | None:
        trouble = self.troubles.take(service)
        if trouble is None:
            return None
        if trouble.delay_s:
            await asyncio.sleep(trouble.delay_s)
        if trouble.status is not None:
            return _error(trouble.status, "INTERNAL", f"injected {trouble.status}")
        return None

    def _enter(self, service: str) -> None:
        with self._lock:
            self.requests[service] += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    async def _recognize(self, request: web.Request) -> web.Response:
        self._enter("stt")
        try:
            params = request.query
            refused = self._check(request, params) or await self._trouble("stt")
            if refused is not None:
                return refused
            if params.get("sampleRateHertz") not in RATES:
                return _error(400, "BAD_REQUEST", "sampleRateHertz must be 8000, 16000 or 48000")
            body = await request.read()
            if not body or len(body) % 2:
                return _error(400, "BAD_REQUEST", "the body must be 16-bit LPCM samples")
            with self._lock:
                self.audio_bytes.append(len(body))
                text = self.transcripts.pop(0) if self.transcripts else self.default_transcript
            return web.json_response({"result": text})
        finally:
            self._leave()

    async def _synthesize(self, request: web.Request) -> web.StreamResponse:
        self._enter("tts")
        try:
            form = await request.post()
            refused = self._check(request, form) or await self._trouble("tts")
            if refused is not None:
                return refused
            rate = str(form.get("sampleRateHertz", ""))
            text = str(form.get("text", ""))
            if rate not in TTS_RATES or not text.strip():
                return _error(400, "BAD_REQUEST", "text and a supported sampleRateHertz")
            with self._lock:
                self.texts.append(text)
            response = web.StreamResponse(headers={"Content-Type": "audio/x-pcm"})
            await response.prepare(request)
            await response.write(tone_pcm(0.6, int(rate)))
            await response.write_eof()
            return response
        finally:
            self._leave()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error_code": code, "error_message": message}, status=status)
