"""HTTP transports that meter every request a client makes.

The OpenAI SDK (on httpx2) and aiohttp both let us hook below the client, so the
livekit plugins' own calls are counted, timed and breaker-guarded without wrapping them.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import httpx2

from .meter import Meter
from .metrics import Outcome

# statuses that say the server (not the request) is in trouble
_SERVER_TROUBLE = frozenset({408, 429}) | frozenset(range(500, 600))
# httpcore trace events that only fire when a new connection is opened
_CONNECT_EVENTS = frozenset(
    {"connection.connect_tcp.complete", "connection.connect_unix_socket.complete"}
)


# which capability of an OpenAI-compatible endpoint a request exercises
_CAPABILITIES = (
    ("/chat/completions", "llm"),
    ("/audio/transcriptions", "stt"),
    ("/audio/speech", "tts"),
)


def capability_of(path: str) -> str | None:
    return next((name for suffix, name in _CAPABILITIES if path.endswith(suffix)), None)


class _Call:
    """One request's bookkeeping: did it open a connection, and how did it end.

    The request is counted on the client's meter (``openai``: the endpoint as a whole) and
    on its capability's (``openai.llm``), whose breaker alone may refuse it.

    A response is counted when its headers arrive (latency = time to first byte, what a
    voice turn waits on), so a stream in progress already shows in the stats; if its body
    then breaks, that same count becomes a failure. A cancelled request (the caller gave
    up) is neither.
    """

    def __init__(self, meter: Meter, request: httpx2.Request) -> None:
        capability = capability_of(request.url.path)
        self.client_meter = meter
        self.meter = meter.capability(capability) if capability else meter
        self.request = request
        self.opened = False
        self.started = self.meter.before_call()
        self.entry: list[Any] | None = None
        self.client_entry: list[Any] | None = None

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        if event in _CONNECT_EVENTS:
            self.opened = True

    def trace_sync(self, event: str, info: dict[str, Any]) -> None:
        if event in _CONNECT_EVENTS:
            self.opened = True

    def on_headers(self, response: httpx2.Response) -> None:
        self.client_meter.record_connection(reused=not self.opened)
        if self.meter is not self.client_meter:
            self.meter.record_connection(reused=not self.opened)
        if response.status_code in _SERVER_TROUBLE:
            error = httpx2.HTTPStatusError(
                f"HTTP {response.status_code} from {self.request.url.path}",
                request=self.request,
                response=response,
            )
            self._finish("failure", error)
        else:
            self._finish("success", None)

    def _finish(self, outcome: Outcome, error: BaseException | None) -> None:
        self.entry = self.meter.finish(self.started, outcome, error)
        if self.meter is not self.client_meter:
            self.client_entry = self.client_meter.observe(self.started, outcome, error)

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            if self.entry is None:
                self.meter.cancelled()
                if self.meter is not self.client_meter:
                    self.client_meter.metrics.counts.cancelled += 1
            return
        outcome: Outcome = "timeout" if isinstance(exc, httpx2.TimeoutException) else "failure"
        if self.entry is None:
            self._finish(outcome, exc)
            return
        self.meter.stream_failed(self.entry, outcome, exc)
        if self.client_entry is not None:
            self.client_meter.metrics.amend_to_failure(self.client_entry, outcome, exc)


class _MeteredAsyncStream(httpx2.AsyncByteStream):
    def __init__(
        self, inner: httpx2.AsyncByteStream, call: _Call, done: Callable[[], None]
    ) -> None:
        self.inner = inner
        self.call = call
        self._done = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except Exception as exc:
            self.call.fail(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self._done()


class _MeteredSyncStream(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, call: _Call) -> None:
        self.inner = inner
        self.call = call

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.inner
        except Exception as exc:
            self.call.fail(exc)
            raise

    def close(self) -> None:
        self.inner.close()


class MeteredAsyncTransport(httpx2.AsyncBaseTransport):
    """Meters every request, and lets the pool replace the connections behind a client
    (:meth:`reset`) without replacing the client that callers hold."""

    def __init__(self, make_inner: Callable[[], httpx2.AsyncBaseTransport], meter: Meter) -> None:
        self._make_inner = make_inner
        self.inner = make_inner()
        self.meter = meter
        self.resets = 0
        # requests still reading from each inner transport, so a retired one closes only
        # once nothing uses it
        self._active: dict[httpx2.AsyncBaseTransport, int] = {}
        self._retired: set[httpx2.AsyncBaseTransport] = set()
        self._closing: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        call = _Call(self.meter, request)
        request.extensions = {**request.extensions, "trace": call.trace}
        inner = self.inner
        self._active[inner] = self._active.get(inner, 0) + 1
        try:
            response = await inner.handle_async_request(request)
        except BaseException as exc:
            call.fail(exc)
            self._release(inner)
            raise
        call.on_headers(response)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _MeteredAsyncStream(
            response.stream, call, done=lambda: self._release(inner)
        )
        return response

    def _release(self, inner: httpx2.AsyncBaseTransport) -> None:
        left = self._active.get(inner, 1) - 1
        if left > 0:
            self._active[inner] = left
            return
        self._active.pop(inner, None)
        if inner in self._retired:
            self._retired.discard(inner)
            task = asyncio.get_running_loop().create_task(inner.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def reset(self) -> None:
        """New connections from now on; the old ones close once their requests end."""
        old, self.inner = self.inner, self._make_inner()
        self.resets += 1
        if self._active.get(old):
            self._retired.add(old)
        else:
            await old.aclose()

    async def aclose(self) -> None:
        retired, self._retired = set(self._retired), set()
        for inner in (self.inner, *retired):
            await inner.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class MeteredSyncTransport(httpx2.BaseTransport):
    def __init__(self, inner: httpx2.BaseTransport, meter: Meter) -> None:
        self.inner = inner
        self.meter = meter

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        call = _Call(self.meter, request)
        request.extensions = {**request.extensions, "trace": call.trace_sync}
        try:
            response = self.inner.handle_request(request)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.on_headers(response)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        response.stream = _MeteredSyncStream(response.stream, call)
        return response

    def close(self) -> None:
        self.inner.close()


def aiohttp_trace_config(meter: Meter) -> aiohttp.TraceConfig:
    """Meter an aiohttp session's requests and connections."""
    config = aiohttp.TraceConfig()

    async def on_start(
        session: aiohttp.ClientSession,
        ctx: types.SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        ctx.started = None  # stays None when the breaker refuses the request
        ctx.started = meter.before_call()

    async def on_end(
        session: aiohttp.ClientSession,
        ctx: types.SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        status = params.response.status
        if status in _SERVER_TROUBLE:
            meter.finish(ctx.started, "failure", RuntimeError(f"HTTP {status}"))
        else:
            meter.finish(ctx.started, "success")

    async def on_exception(
        session: aiohttp.ClientSession,
        ctx: types.SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        if getattr(ctx, "started", None) is None:
            return  # refused by the breaker before it started: counted as rejected
        if isinstance(params.exception, asyncio.CancelledError):
            meter.cancelled()
            return
        timeout = isinstance(params.exception, TimeoutError)
        meter.finish(ctx.started, "timeout" if timeout else "failure", params.exception)

    async def on_new_connection(
        session: aiohttp.ClientSession,
        ctx: types.SimpleNamespace,
        params: aiohttp.TraceConnectionCreateEndParams,
    ) -> None:
        meter.record_connection(reused=False)

    async def on_reused_connection(
        session: aiohttp.ClientSession,
        ctx: types.SimpleNamespace,
        params: aiohttp.TraceConnectionReuseconnParams,
    ) -> None:
        meter.record_connection(reused=True)

    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_exception)
    config.on_connection_create_end.append(on_new_connection)
    config.on_connection_reuseconn.append(on_reused_connection)
    return config
