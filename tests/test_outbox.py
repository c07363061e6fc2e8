"""Durability of background memory writes, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pool import get_pool
from testbed.tcp_proxy import TcpProxy
from testbed.waiting import wait_until, wait_until_sync
from tests.support.services import dsn_port, stored_memories, through
from tools.memory import CATEGORIES, MemoryService, Write, open_memory_service
from tools.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture
def clean_pg(pg_dsn: str) -> str:
    from tests.support.services import truncate

    with_thread(truncate(pg_dsn))
    return pg_dsn


def with_thread(coro) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as executor:
        executor.submit(asyncio.run, coro).result(60)


@pytest.fixture
def pg_proxy(pg_admin_dsn: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", dsn_port(pg_admin_dsn)).start()
    yield proxy
    proxy.stop()


def drained(memory: MemoryService) -> Callable[[], Awaitable[bool]]:
    async def empty() -> bool:
        assert memory.outbox is not None
        return await memory.outbox.pending() == 0

    return empty


async def test_a_database_outage_loses_none_of_1000_saves(
    clean_pg: str, pg_proxy: TcpProxy, settings: Settings
) -> None:
    settings = replace(
        settings,
        memory_backend="postgres",
        database_url=through(pg_proxy, clean_pg),
        breaker_reset_s=0.3,
    )
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    assert memory.outbox is not None
    try:
        assert await memory.save("outage-user", "FACT", "before", "stored directly") == "saved"

        pg_proxy.cut()
        for i in range(1000):
            stamp = time.time()
            # over the three categories: a category keeps MAX_PER_CATEGORY, 500
            category = CATEGORIES[i % 3]
            await memory.save_later([Write("outage-user", category, f"k{i:04d}", f"v{i}", stamp)])
        # a save the user waits on, during the outage: queued, not lost
        assert await memory.save("outage-user", "FACT", "during", "queued") == "queued"
        # durable on put: all of it is pending, and the flusher really met the outage
        assert await memory.outbox.pending() == 1001
        await wait_until(lambda: memory.outbox.failed_flushes > 0, 30, what="the outage")
        assert await stored_memories(clean_pg, "outage-user") == {"before": "stored directly"}

        pg_proxy.restore()
        await wait_until(drained(memory), 60, what="the outbox to drain", every_s=0.1)
    finally:
        await memory.aclose()
        await pool.aclose()

    stored = await stored_memories(clean_pg, "outage-user")
    assert len(stored) == 1002
    assert stored["k0999"] == "v999" and stored["during"] == "queued"


def test_sigkill_in_the_middle_of_flushing_loses_no_acknowledged_save(
    clean_pg: str, tmp_path: Path
) -> None:
    # a slow link, so the kill lands while batches are still being flushed
    proxy = TcpProxy("127.0.0.1", dsn_port(clean_pg), rtt_s=0.04).start()
    outbox = str(tmp_path / "outbox.db")
    command = [
        sys.executable,
        "-m",
        "tests.support.outbox_writer",
        through(proxy, clean_pg),
        outbox,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen(
        [*command, "1000"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        acked = 0
        for line in writer.stdout:
            if line.startswith("ACKED"):
                acked = int(line.split()[1]) + 1
            if acked == 1000:
                break
        flushed = wait_until_sync(
            lambda: (n := len(asyncio.run(stored_memories(clean_pg, "crash-user")))) >= 50 and n,
            60,
            what="50 writes flushed",
        )
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        assert 0 < flushed < 1000, "the kill should land in the middle of flushing"

        replay = subprocess.run(
            [*command, "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert "DRAINED" in replay.stdout, replay.stderr[-2000:]
    finally:
        writer.kill()
        writer.wait(10)
        if writer.stdout is not None:
            writer.stdout.close()
        proxy.stop()

    stored = asyncio.run(stored_memories(clean_pg, "crash-user"))
    assert acked == 1000
    assert len(stored) == 1000
    assert stored["k0000"] == "value 0" and stored["k0999"] == "value 999"
