from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from pytest_redis import factories

from pool import ConnectionPool, Settings, get_pool
from room.livekit_server import LiveKitServer, LiveKitUnavailableError, ensure_binary
from tests.support.openai_server import OpenAIServer
from tests.support.postgrest import PostgrestServer

# a throwaway redis-server on a free port, started on first use (see the redis_url fixture)
redis_proc = factories.redis_proc(port=None)

SECRET_MARKER = "sk-test-SECRET-MARKER-7f3a9c"


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def server(openai_server: OpenAIServer) -> OpenAIServer:
    openai_server.reset()
    return openai_server


@pytest.fixture
def settings(server: OpenAIServer, tmp_path: object) -> Settings:
    return Settings(
        openai_api_key=SECRET_MARKER,
        openai_base_url=server.base_url,
        memory_sqlite_path=f"{tmp_path}/memory.db",
        memory_outbox_path=f"{tmp_path}/outbox.db",
        openai_read_timeout_s=5.0,
    )


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[ConnectionPool]:
    pool = get_pool(settings)
    yield pool
    await pool.aclose()


# -- servers the suite starts itself ---------------------------------------------------------

# the local PostgREST's project secret; its anon and service keys are signed with it
SUPABASE_TEST_JWT_SECRET = "local-test-jwt-secret-0b7c2f9e4d6a8131"


def missing(message: str) -> None:
    """Skip on a developer's machine without the service; fail loudly under CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI=true requires it.", pytrace=False)
    pytest.skip(message)


def given_server(variable: str, default_port: int) -> str | None:
    """The URL in ``variable``, if set; a server named there must answer."""
    given = os.environ.get(variable)
    if given:
        parts = urlsplit(given)
        if not service_reachable(parts.hostname or "127.0.0.1", parts.port or default_port):
            missing(f"{variable} names {parts.hostname}:{parts.port}, which does not answer")
    return given


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A superuser DSN: TEST_DATABASE_URL, or a throwaway server for this test session."""
    from tests.support.postgres import PostgresServer, ServiceMissingError

    given = given_server("TEST_DATABASE_URL", 5432)
    if given:
        yield given
        return
    try:
        server = PostgresServer()
    except ServiceMissingError as exc:
        missing(str(exc))
    with server:
        yield server.dsn


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """TEST_REDIS_URL, or a throwaway redis-server (pytest-redis) for this test session."""
    given = given_server("TEST_REDIS_URL", 6379)
    if given:
        return given
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed; `make test` installs it when run as root")
    proc = request.getfixturevalue("redis_proc")
    return f"redis://{proc.host}:{proc.port}/0"


@pytest.fixture(scope="session")
def livekit() -> Iterator[LiveKitServer]:
    """A dev-mode LiveKit server on loopback, built from its Go module on first use."""
    try:
        binary = ensure_binary()
    except LiveKitUnavailableError as exc:
        missing(str(exc))
    with LiveKitServer(binary) as server:
        yield server


@pytest.fixture(scope="session")
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A throwaway database on the test PostgreSQL, with the migration applied."""
    import asyncio
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    import asyncpg

    name = f"agent_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def run(sql: str) -> None:
        # this fixture may be set up from inside a running test loop
        with ThreadPoolExecutor(1) as executor:
            executor.submit(asyncio.run, admin(sql)).result(60)

    run(f'CREATE DATABASE "{name}"')
    dsn = database_dsn(pg_admin_dsn, name)
    try:
        with ThreadPoolExecutor(1) as executor:
            executor.submit(asyncio.run, migrate(dsn)).result(60)
        yield dsn
    finally:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_dsn(admin_dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))


def dsn_port(dsn: str) -> int:
    return urlsplit(dsn).port or 5432


@pytest.fixture(scope="session")
def postgrest(pg_dsn: str) -> Iterator[PostgrestServer]:
    """PostgREST over the test database, with Supabase's roles."""
    from tests.support.postgrest import PostgrestServer

    server = PostgrestServer(pg_dsn, SUPABASE_TEST_JWT_SECRET).start()
    yield server
    server.stop()


def supabase_settings(settings: Settings, postgrest: PostgrestServer) -> Settings:
    """The agent on the local PostgREST with the anon key and per-user tokens (RLS)."""
    from dataclasses import replace

    return replace(
        settings,
        memory_backend="supabase",
        supabase_url=postgrest.url,
        supabase_key=postgrest.anon_key,
        supabase_jwt_secret=SUPABASE_TEST_JWT_SECRET,
    )


async def migrate(dsn: str) -> None:
    import asyncpg

    from tools.stores.postgres import apply_migration

    conn = await asyncpg.connect(dsn)
    try:
        await apply_migration(conn)
    finally:
        await conn.close()


async def truncate(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.memories')")
        if exists:
            await conn.execute("TRUNCATE public.memories, public.memory_tombstones")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres", "supabase"])
async def backend_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Settings for each memory backend in turn, with an empty store."""
    from dataclasses import replace

    backend = request.param
    if backend == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        await truncate(dsn)
        return replace(settings, memory_backend="postgres", database_url=dsn)
    if backend == "supabase":
        postgrest = request.getfixturevalue("postgrest")
        postgrest.reset()
        await truncate(postgrest.dsn)
        return supabase_settings(settings, postgrest)
    return settings


@pytest.fixture
async def memory(backend_settings: Settings) -> AsyncIterator[object]:
    """The memory service on each backend in turn, with its pool; closed afterwards."""
    from tools.stores import open_memory_service

    pool = get_pool(backend_settings)
    service = await open_memory_service(pool)
    yield service
    await service.aclose()
    await pool.aclose()


@pytest.fixture(scope="session")
def vad() -> object:
    """Silero's VAD, loaded once: what cuts a session's audio into utterances."""
    from livekit.plugins import silero

    return silero.VAD.load()


@pytest.fixture
def espeak() -> None:
    """Spoken test audio needs espeak-ng: required under CI, else a skip with the reason."""
    from tests.support.audio_io import espeak_available

    if not espeak_available():
        missing("espeak-ng is not installed; `make test` installs it when run as root.")


async def wait_until(condition: Callable[[], object], timeout: float = 20.0) -> None:
    import asyncio

    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting for the agent")
