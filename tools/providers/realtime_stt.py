"""Streaming speech recognition: OpenAI's realtime transcription (``livekit-plugins-openai``
``STT(use_realtime=True)``) on the pool's connections.

The plugin streams the person's audio over a WebSocket while they speak and hears the words
as they come (interim transcripts), so the transcript is ready when the turn ends instead of
a whole utterance being uploaded after it. Here its WebSocket is opened on the pool's aiohttp
session (metered with every HTTP request the agent makes) and each connect goes through the
provider's ``stt`` capability meter: an open breaker refuses the connect at once, so the STT
chain moves to the next provider, and a session that fails once connected counts against it.

The plugin has no public way to be given a session or to wrap its connect: the two private
names this module overrides are checked by ``PRIVATE_API`` (a test fails loudly when a livekit
upgrade renames them, rather than the pool silently losing the connection).
"""

from __future__ import annotations

from typing import Any

import aiohttp
from livekit.agents import APIConnectionError, APIStatusError, stt
from livekit.plugins import openai as openai_plugin

from pool import CircuitOpenError, Meter, redact

# the plugin's own names this adapter depends on
PRIVATE_API = ("_ensure_session", "_connect_ws")
# livekit recreates a broken stream every half second: while the breaker is open each try
# fails without a request, and a trial goes through this often, not after BREAKER_RESET_S
STREAM_BREAKER_RESET_S = 5.0


class RealtimeSTT(openai_plugin.STT):
    def __init__(self, *, session: aiohttp.ClientSession, meter: Meter, **options: Any) -> None:
        super().__init__(use_realtime=True, **options)
        self._pool_session = session
        self._meter = meter
        meter.breaker.reset_timeout_s = min(meter.breaker.reset_timeout_s, STREAM_BREAKER_RESET_S)
        self._connect_error: BaseException | None = None  # counted by the connect's guard
        self.on("error", self._count_failure)

    def _ensure_session(self) -> aiohttp.ClientSession:
        return self._pool_session

    async def _connect_ws(self, timeout: float) -> aiohttp.ClientWebSocketResponse:
        try:
            async with self._meter.guard():
                return await super()._connect_ws(timeout)
        except CircuitOpenError as exc:
            failure: BaseException = APIConnectionError(
                f"{self._meter.name}: {exc}", retryable=False
            )
        except aiohttp.WSServerHandshakeError as exc:
            # an HTTP refusal of the upgrade: livekit's error, so the chain can move on
            failure = APIStatusError(
                f"{self._meter.name}: the realtime endpoint answered {exc.status}",
                status_code=exc.status,
            )
        except (aiohttp.ClientError, OSError) as exc:
            failure = APIConnectionError(f"{self._meter.name}: {redact(str(exc))}")
        except BaseException as exc:
            self._connect_error = exc
            raise
        self._connect_error = failure
        raise failure from None

    def _count_failure(self, event: stt.STTError) -> None:
        """A session that broke once connected; a failed connect was counted by its guard."""
        error: BaseException | None = event.error
        seen: set[int] = set()
        while error is not None and id(error) not in seen:
            if error is self._connect_error:
                return
            seen.add(id(error))
            error = error.__cause__ or error.__context__
        self._meter.failed_later(event.error)
