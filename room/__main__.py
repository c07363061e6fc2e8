"""``make room``: the local LiveKit server, the worker and the web page, on loopback.

python -m room          # then open the address it prints; Ctrl+C stops all three
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from aiohttp import web
from dotenv import find_dotenv, load_dotenv

from pool import ConfigError
from tools.settings import Settings

from .livekit_server import API_KEY, API_SECRET, LiveKitServer, LiveKitUnavailableError
from .redis_server import RedisUnavailableError
from .rooms import RoomConfig
from .web import LIVEKIT_CLIENT, create_app
from .worker_process import WorkerProcess

AGENT_NAME = "voice-room"


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError(value)
    return port


async def serve(
    host: str, pages: list[tuple[int, RoomConfig]], workers: list[subprocess.Popen[bytes]]
) -> int:
    """The pages (a port and the LiveKit node each reaches), until Ctrl+C or a worker exits."""
    runners = [web.AppRunner(create_app(config), access_log=None) for _, config in pages]
    try:
        for runner, (port, config) in zip(runners, pages, strict=True):
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            print(
                f"Open {config.page_url(host, port)}  "
                f"(LiveKit at {config.livekit_url}; Ctrl+C stops all)",
                flush=True,
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set() and all(w.poll() is None for w in workers):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
    for worker in workers:
        if worker.poll() is not None:
            print(f"room: a worker exited with code {worker.returncode}", file=sys.stderr)
            return 1
    return 0


def started(workers: list[WorkerProcess]) -> None:
    """Wait until every worker registered with its LiveKit server."""
    for worker in workers:
        if not worker.wait_registered():
            raise ConfigError(
                "the worker did not register with the LiveKit server (its log is above)"
            )


def agent_for_pages(command: str) -> str:
    """The name the pages dispatch, once what they and the worker need is there."""
    settings = Settings.from_env()
    settings.require_openai()
    if not LIVEKIT_CLIENT.exists():
        raise ConfigError(
            f"livekit-client is not installed: run `npm ci` in room/ ({command} does)."
        )
    return settings.agent_name or AGENT_NAME


def run(host: str, port: int) -> int:
    agent_name = agent_for_pages("make room")
    livekit = LiveKitServer().start()
    worker: WorkerProcess | None = None
    try:
        worker = WorkerProcess(
            {
                "LIVEKIT_URL": livekit.url,
                "LIVEKIT_API_KEY": API_KEY,
                "LIVEKIT_API_SECRET": API_SECRET,
                "AGENT_NAME": agent_name,
            }
        )
        started([worker])
        config = RoomConfig(livekit.url, API_KEY, API_SECRET, agent_name=agent_name)
        return asyncio.run(serve(host, [(port, config)], [worker.process]))
    finally:
        if worker is not None:
            worker.stop()
        livekit.stop()


def launch(run: Callable[[str, int], int]) -> int:
    """``run`` on ROOM_HOST and ROOM_PORT, with what stops it said in a sentence."""
    load_dotenv(find_dotenv(usecwd=True))
    host = os.environ.get("ROOM_HOST", "127.0.0.1")
    try:
        port = _port(os.environ.get("ROOM_PORT", "8080"))
    except ValueError:
        print(f"room: ROOM_PORT must be a port number, got {os.environ['ROOM_PORT']!r}")
        return 2
    try:
        return run(host, port)
    except (ConfigError, LiveKitUnavailableError, RedisUnavailableError) as exc:
        print(f"room: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"room: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2


def main() -> int:
    return launch(run)


if __name__ == "__main__":
    sys.exit(main())
