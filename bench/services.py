"""The servers a benchmark talks to: the ones the environment names, or throwaway ones on
free loopback ports, stopped by pid when the block ends."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

from room.redis_server import throwaway_redis


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """TEST_DATABASE_URL, or a throwaway server for the length of the figure."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    from testbed.postgres import PostgresServer

    with PostgresServer() as server:
        yield server.dsn


@contextlib.contextmanager
def redis() -> Iterator[str | None]:
    """TEST_REDIS_URL, or a throwaway redis-server for the length of the figure (None when
    there is no redis-server: the Redis case is then left out, with a note)."""
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given
        return
    if shutil.which("redis-server") is None:
        yield None
        return
    with throwaway_redis() as url:
        yield url


__all__ = ["postgres", "redis", "throwaway_redis"]
