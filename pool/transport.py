"""HTTP transports that meter every request a client makes.

The OpenAI SDK (on httpx2) and aiohttp both let us hook below the client, so the
livekit plugins' own calls are counted, timed and breaker-guarded without wrapping them.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Iterator
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


class _Call:
    """One request's bookkeeping: did it open a connection, and how did it end.

    A response is counted when its headers arrive (latency = time to first byte, what a
    voice turn waits on), so a stream in progress already shows in the stats; if its body
    then breaks, that same count becomes a failure.
    """

    def __init__(self, meter: Meter, request: httpx2.Request) -> None:
        self.meter = meter
        self.request = request
        self.opened = False
        self.started = meter.before_call()
        self.entry: list[Any] | None = None
        request.extensions = {**request.extensions, "trace": self.trace}

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        if event in _CONNECT_EVENTS:
            self.opened = True

    def trace_sync(self, event: str, info: dict[str, Any]) -> None:
        if event in _CONNECT_EVENTS:
            self.opened = True

    def on_headers(self, response: httpx2.Response) -> None:
        self.meter.record_connection(reused=not self.opened)
        if response.status_code in _SERVER_TROUBLE:
            error = httpx2.HTTPStatusError(
                f"HTTP {response.status_code} from {self.request.url.path}",
                request=self.request,
                response=response,
            )
            self.entry = self.meter.finish(self.started, "failure", error)
        else:
            self.entry = self.meter.finish(self.started, "success")

    def fail(self, exc: BaseException) -> None:
        outcome: Outcome = "timeout" if isinstance(exc, httpx2.TimeoutException) else "failure"
        if self.entry is None:
            self.entry = self.meter.finish(self.started, outcome, exc)
        else:
            self.meter.stream_failed(self.entry, outcome, exc)


class _MeteredAsyncStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, call: _Call) -> None:
        self.inner = inner
        self.call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except Exception as exc:  # a cancelled turn is not the server's failure
            self.call.fail(exc)
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


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
    def __init__(self, inner: httpx2.AsyncBaseTransport, meter: Meter) -> None:
        self.inner = inner
        self.meter = meter

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        call = _Call(self.meter, request)
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.on_headers(response)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _MeteredAsyncStream(response.stream, call)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


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
        ctx.started = meter.before_call()
        ctx.done = False

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
