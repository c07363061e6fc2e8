"""The background health loop heals what broke, and stops with the pool."""

from __future__ import annotations

from dataclasses import replace

from pool import ClientState, get_pool
from testbed.openai_server import OpenAIServer
from testbed.tcp_proxy import TcpProxy
from testbed.waiting import wait_until
from tools.settings import Settings


async def test_server_down_then_up_is_healed_by_the_probe_and_the_client_is_kept(
    settings: Settings, server: OpenAIServer
) -> None:
    host, port = server.host, server.port
    proxy = TcpProxy(host, port).start()
    fast = replace(
        settings,
        openai_base_url=f"http://127.0.0.1:{proxy.port}/v1",
        health_tick_s=0.02,
        health_probe_s=0.05,
        openai_connect_timeout_s=0.2,
        breaker_failure_threshold=1000,
    )
    pool = get_pool(fast)
    try:
        await pool.warm()
        first_client = await pool.openai()
        entry = lambda: pool.stats().resources["openai"]  # noqa: E731
        assert entry().client is ClientState.OPEN

        proxy.cut()
        await wait_until(lambda: entry().resets >= 1, 10, what="a failed probe to heal")
        assert entry().counts.failures >= 1

        proxy.restore()
        successes = entry().counts.successes
        # the next probe succeeds on fresh connections, before any caller needs them
        await wait_until(
            lambda: entry().client is ClientState.OPEN and entry().counts.successes > successes,
            10,
            what="a probe on fresh connections",
        )
        # whoever holds the client (the session's plugins) still holds a working one
        assert (await pool.openai()) is first_client
        assert not first_client.is_closed()
        assert (await first_client.models.list()).data
    finally:
        await pool.aclose()
        proxy.stop()
    assert pool._health.task is None  # cancelled and awaited


async def test_the_tick_rebuilds_a_closed_session(settings: Settings) -> None:
    pool = get_pool(replace(settings, health_tick_s=0.02, health_probe_s=3600))
    try:
        await pool.warm()
        session = await pool.http()
        await session.close()
        await wait_until(lambda: pool.stats().resources["http"].rebuilds == 1, 10, what="a rebuild")
        assert (await pool.http()) is not session
    finally:
        await pool.aclose()
