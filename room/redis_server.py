"""A throwaway redis-server on a free loopback port, stopped by pid when the block ends."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

from . import processes
from .ports import free_tcp_port, wait_for_port


class RedisUnavailableError(RuntimeError):
    pass


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0`` of a fresh server that keeps nothing on disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailableError(
            "redis-server is not installed: `make cluster` installs it when run as root "
            "(the Debian package redis-server)."
        )
    port = free_tcp_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(port, 10):
            raise RedisUnavailableError("redis-server did not start within 10 s")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        processes.stop(server)
