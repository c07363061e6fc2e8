from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from pool import ConnectionPool, Settings, get_pool
from tests.support.openai_server import OpenAIServer

SECRET_MARKER = "sk-test-SECRET-MARKER-7f3a9c"


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip on a developer's machine without the service; fail loudly under CI."""
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI=true requires it.")
    pytest.skip(f"{message}; start it to run this test.")


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


# -- memory backends ----------------------------------------------------------------------

PG_ADMIN_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SUPABASE_TEST_KEY = "service-role-test-key-5b1e"


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A throwaway database on the local PostgreSQL, with the migration applied by the store."""
    import asyncio
    import uuid
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    parts = urlsplit(PG_ADMIN_DSN)
    require_service("PostgreSQL", parts.hostname or "127.0.0.1", parts.port or 5432)
    name = f"agent_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def run(sql: str) -> None:
        # this fixture may be set up from inside a running test loop
        with ThreadPoolExecutor(1) as executor:
            executor.submit(asyncio.run, admin(sql)).result(60)

    run(f'CREATE DATABASE "{name}"')
    dsn = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        with ThreadPoolExecutor(1) as executor:
            executor.submit(asyncio.run, migrate(dsn)).result(60)
        yield dsn
    finally:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgrest_double() -> Iterator[object]:
    from tests.support.postgrest_double import PostgrestDouble

    double = PostgrestDouble(api_key=SUPABASE_TEST_KEY).start()
    yield double
    double.stop()


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
        double = request.getfixturevalue("postgrest_double")
        double.reset()
        return replace(
            settings,
            memory_backend="supabase",
            supabase_url=double.url,
            supabase_key=SUPABASE_TEST_KEY,
        )
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
