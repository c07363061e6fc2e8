"""A SQLite file whose opening is cancelled leaves no connection thread behind.

aiosqlite runs each connection on a thread that is not a daemon: one left open keeps the
process from exiting. A worker told to stop while it opens its outbox (it does so as it
starts, to store what a killed run left) then never exits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from pool import PoolSettings, SqliteFile
from pool.cache_layers import SqliteLayer
from pool.slot import meter_for
from tools.memory.outbox_file import OutboxFile
from tools.memory.stores.sqlite import SqliteStore

Opener = Callable[[str], Awaitable[object]]


def connection_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]


async def until_no_connection_thread(seconds: float = 5.0) -> list[threading.Thread]:
    for _ in range(int(seconds / 0.01)):
        if not connection_threads():
            break
        await asyncio.sleep(0.01)
    return connection_threads()


async def close(opened: object) -> None:
    file = opened if isinstance(opened, SqliteFile) else opened.file  # type: ignore[attr-defined]
    await file.aclose()


OPENERS: dict[str, Opener] = {
    "file": SqliteFile.open,
    "outbox": OutboxFile.open,
    "store": lambda path: SqliteStore.open(path, meter_for("sqlite", PoolSettings())),
    "cache": lambda path: SqliteLayer.open(path, meter_for("sqlite-cache", PoolSettings())),
}


@pytest.mark.parametrize("name", OPENERS)
async def test_an_opening_cancelled_at_any_step_leaves_no_connection_thread(
    name: str, tmp_path: Path
) -> None:
    opener = OPENERS[name]
    assert await until_no_connection_thread() == []
    began = time.monotonic()
    await close(await opener(str(tmp_path / "whole.db")))
    took = time.monotonic() - began
    cancelled_mid_way = 0
    # each step of an opening is a round trip to the connection's thread: cancelling at
    # forty points across the time a whole opening takes lands in each of them
    for point in range(41):
        task = asyncio.create_task(opener(str(tmp_path / f"{point}.db")))
        await asyncio.sleep(took * point / 40)
        task.cancel()
        try:
            await close(await task)
        except asyncio.CancelledError:
            cancelled_mid_way += 1
        assert await until_no_connection_thread() == [], f"left at {point}/40 of an opening"
    assert cancelled_mid_way > 3
