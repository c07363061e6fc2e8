"""The pool never closes what a session holds: for every kind of resource, the client a
session was handed still works after cleanup() and heal(), which give it fresh connections
where it can have them (OpenAI, Google) and otherwise leave it alone while it is open."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pool import ConnectionPool, get_pool
from testbed.google import GoogleDouble
from testbed.openai_server import OpenAIServer
from testbed.yandex import YandexDouble
from tests.test_google import cloud
from tests.test_yandex import speechkit
from tools.memory import MemoryService
from tools.providers import build_tts
from tools.settings import Settings

pytestmark = pytest.mark.slow


async def cleanup_and_heal(pool: ConnectionPool, name: str) -> dict[str, list[str]]:
    report = await pool.cleanup()
    await pool.heal(name)
    return report


def idle_at_once(settings: Settings) -> Settings:
    # every client counts as idle at the first cleanup
    return replace(settings, http_keepalive_s=0.0)


async def test_the_openai_client_a_session_holds_gets_new_connections_and_keeps_working(
    settings: Settings, server: OpenAIServer
) -> None:
    async with get_pool(idle_at_once(settings)) as pool:
        client = await pool.openai()  # as the session's LLM, STT and TTS plugins hold it
        await client.models.list()
        report = await cleanup_and_heal(pool, "openai")
        assert report["closed_idle"] == ["openai"]
        assert (await client.models.list()).data
        assert await pool.openai() is client
        assert pool.stats().resources["openai"].resets == 2


async def test_the_http_session_a_caller_holds_is_left_alone_while_open(
    settings: Settings, server: OpenAIServer
) -> None:
    async with get_pool(idle_at_once(settings)) as pool:
        session = await pool.http()
        report = await cleanup_and_heal(pool, "http")
        assert report["closed_idle"] == []
        async with session.get(f"{server.base_url}/models") as response:
            assert response.status == 200
        assert await pool.http() is session and not session.closed


@pytest.mark.parametrize("kind", ["google", "yandex"])
async def test_a_speech_provider_the_session_holds_still_speaks_after_cleanup_and_heal(
    kind: str,
    settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    double: GoogleDouble | YandexDouble = request.getfixturevalue(kind)
    provider = cloud(double) if isinstance(double, GoogleDouble) else speechkit(double)
    settings = replace(idle_at_once(settings), tts_providers=(provider,))
    async with get_pool(settings) as pool:
        voice = await build_tts(pool, settings)  # the session's TTS, holding the pool client
        assert await voice.synthesize("before").collect()
        await cleanup_and_heal(pool, provider.name)
        # Google's channels were replaced behind the handle; Yandex's client was left alone
        assert await voice.synthesize("after").collect()
        figures = pool.stats().resources[provider.name]
        assert figures.rebuilds == 0
        assert figures.resets == (2 if kind == "google" else 0)


async def test_the_store_a_memory_service_holds_still_answers_after_cleanup_and_heal(
    memory: MemoryService,
) -> None:
    store = await memory.store()
    pool, name = memory.pool, memory.settings.memory_backend
    await memory.save("ada", "FACT", "city", "Turin")
    pool.settings = idle_at_once(pool.settings)
    await cleanup_and_heal(pool, name)
    assert [m.value for m in await store.recall("ada")] == ["Turin"]
    assert await memory.store() is store
    assert pool.stats().resources[name].rebuilds == 0
