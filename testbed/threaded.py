"""Local servers on loopback, each served by an event loop in a daemon thread of its own, so
it keeps answering while a test (or a benchmark) blocks; and the faults they can be told
to inject."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from aiohttp import web

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


class ThreadedServer:
    """Start, stop and count connections for a local server; a subclass says what it
    serves (:meth:`app` for HTTP, or its own :meth:`serve`)."""

    thread_name = "local-server"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.connections = 0
        self._lock = threading.Lock()
        self._thread: LoopThread | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread = LoopThread(self.thread_name)
        try:
            self._thread.run(self.serve())
        except BaseException:
            self._thread.stop()
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            thread.run(self.shutdown())
        finally:
            thread.stop()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop, from the caller's thread."""
        assert self._thread is not None, "the server is not running"
        return self._thread.run(coro)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- on the server's loop -------------------------------------------------------------

    def app(self) -> web.Application:
        raise NotImplementedError("an HTTP server says what it serves")

    async def serve(self) -> None:
        """Serve :meth:`app` over HTTP, counting the connections it accepts."""
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        handler = self._runner.server
        assert handler is not None

        def counting() -> asyncio.Protocol:
            with self._lock:
                self.connections += 1
            return handler()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            counting, self.host, self.port, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.close_connections()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()

    async def close_connections(self) -> None:
        """End long-lived connections (WebSockets), which the HTTP runner would wait out."""


@dataclass
class Trouble:
    """A fault a double injects: an error (an HTTP status or a gRPC code), a delay before
    the answer, for every request or the next ``times`` ones."""

    status: Any = None  # an HTTP status (int) or a grpc.StatusCode
    delay_s: float = 0.0
    times: int | None = None  # None: every request


class Troubles:
    """The faults a double is told to inject per service (``"stt"``, ``"tts"``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_service: dict[str, Trouble] = {}

    def fail(self, service: str, trouble: Trouble) -> None:
        with self._lock:
            self._by_service[service] = trouble

    def heal(self) -> None:
        with self._lock:
            self._by_service.clear()

    def take(self, service: str) -> Trouble | None:
        """The fault for this request, if any (one fewer left when it is counted)."""
        with self._lock:
            trouble = self._by_service.get(service)
            if trouble is not None and trouble.times is not None:
                trouble.times -= 1
                if trouble.times <= 0:
                    del self._by_service[service]
        return trouble
