"""A TCP proxy on 127.0.0.1 that a test can cut and restore, or slow down.

- ``cut()``: drop every open connection and refuse new ones, as when a database host
  disappears; ``restore()`` lets connections through again.
- ``rtt_s``: delay each chunk in each direction by half the round-trip time, and a new
  connection by one round trip, so a fresh TLS request costs about three round trips.
"""

from __future__ import annotations

import asyncio
import contextlib

from .threaded import LoopThread


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, rtt_s: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.rtt_s = rtt_s
        self.port = 0
        self.accepted = 0
        self._open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._thread: LoopThread | None = None

    def start(self) -> TcpProxy:
        self._thread = LoopThread("tcp-proxy")
        self._thread.run(self._startup())
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.run(self._shutdown())
            self._thread.stop()

    def cut(self) -> None:
        assert self._thread is not None
        self._thread.run(self._cut())

    def restore(self) -> None:
        self._open = True

    async def _startup(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _cut(self) -> None:
        self._open = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if not self._open:
            client_w.transport.abort()
            return
        self.accepted += 1
        if self.rtt_s:
            await asyncio.sleep(self.rtt_s)  # the TCP handshake's round trip
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        await asyncio.gather(
            self._pipe(client_r, server_w), self._pipe(server_r, client_w), return_exceptions=True
        )
        for writer in (client_w, server_w):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.rtt_s:
            with contextlib.suppress(ConnectionError, OSError):
                while chunk := await reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
        else:
            await self._delayed_pipe(reader, writer)
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.write_eof()

    async def _delayed_pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Every chunk arrives half a round trip after it was sent, like on a real link:
        delayed, but not queued behind the chunks before it."""
        loop = asyncio.get_running_loop()
        in_flight: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await in_flight.get()
                if not chunk:
                    return
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        delivery = asyncio.create_task(deliver())
        try:
            with contextlib.suppress(ConnectionError, OSError):
                while chunk := await reader.read(65536):
                    in_flight.put_nowait((loop.time() + self.rtt_s / 2, chunk))
            in_flight.put_nowait((loop.time() + self.rtt_s / 2, b""))
            with contextlib.suppress(ConnectionError, OSError):
                await delivery
        finally:
            delivery.cancel()
