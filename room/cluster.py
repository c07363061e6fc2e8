"""``make cluster``: LiveKit's distributed mode on this machine, on loopback.

A throwaway Redis, two livekit-server nodes sharing it, one worker registered on each, and
the room page twice: ROOM_PORT reaches node A, ROOM_PORT + 1 node B. A room opened through
either page may be served by either worker, and what you said through one page is
remembered through the other. The workers share this machine's memory (the SQLite file, or
the store your .env names) and, unless REDIS_URL names another, the greeting cache in the
same Redis as the nodes (a database of its own).

    python -m room.cluster     # prints an address per node; Ctrl+C stops everything
"""

from __future__ import annotations

import asyncio
import os
import sys
from urllib.parse import urlsplit

from pool import ConfigError

from .__main__ import agent_for_pages, launch, serve, started
from .livekit_server import API_KEY, API_SECRET, LiveKitServer
from .redis_server import throwaway_redis
from .rooms import RoomConfig
from .worker_process import WorkerProcess


def run(host: str, port: int) -> int:
    agent_name = agent_for_pages("make cluster")
    if port + 1 > 65535:
        raise ConfigError(f"ROOM_PORT {port} leaves no port for node B's page ({port + 1}).")
    with throwaway_redis() as redis_url:
        # the nodes' routing in database 1, the greeting cache in 0
        routing = urlsplit(redis_url).netloc + "/1"
        with LiveKitServer(redis=routing) as a, LiveKitServer(redis=routing) as b:
            workers: list[WorkerProcess] = []
            try:
                for node in (a, b):
                    env = {
                        "LIVEKIT_URL": node.url,
                        "LIVEKIT_API_KEY": API_KEY,
                        "LIVEKIT_API_SECRET": API_SECRET,
                        "AGENT_NAME": agent_name,
                        "REDIS_URL": os.environ.get("REDIS_URL") or redis_url,
                    }
                    workers.append(WorkerProcess(env))
                started(workers)
                pages = [
                    (port + i, RoomConfig(node.url, API_KEY, API_SECRET, agent_name=agent_name))
                    for i, node in enumerate((a, b))
                ]
                return asyncio.run(serve(host, pages, [w.process for w in workers]))
            finally:
                for worker in workers:
                    worker.stop()


if __name__ == "__main__":
    sys.exit(launch(run))
