from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pytest_redis import factories

from pool import ConnectionPool, get_pool
from room.livekit_server import LiveKitServer, LiveKitUnavailableError, ensure_binary
from testbed.google import GoogleDouble
from testbed.openai_server import OpenAIServer
from testbed.postgres import PostgresServer, ServiceMissingError
from testbed.postgrest import PostgrestServer
from testbed.worker import Worker, room_env
from testbed.yandex import YandexDouble
from tests.support.rooms import KEY
from tests.support.services import (
    SECRET_MARKER,
    SUPABASE_TEST_JWT_SECRET,
    YANDEX_FOLDER,
    YANDEX_KEY,
    database_dsn,
    given_server,
    migrate,
    missing,
    supabase_settings,
    truncate,
)
from tools.memory import MemoryService, open_memory_service
from tools.settings import Settings


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that ran a worker shows that worker's last log lines: under CI they are
    all there is to tell a room nobody joined from a job that failed."""
    report = yield
    if call.when == "call" and report.failed:
        workers = Worker.started[item.stash.get(WORKERS_BEFORE, len(Worker.started)) :]
        # and the module's shared ones
        for value in getattr(item, "funcargs", {}).values():
            for shared in value if isinstance(value, tuple) else (value,):
                if isinstance(shared, Worker) and shared not in workers:
                    workers.append(shared)
        for worker in workers:
            report.sections.append((f"worker {worker.agent_name} log", worker.tail(60)))
    return report


WORKERS_BEFORE = pytest.StashKey[int]()


@pytest.fixture(autouse=True)
def _count_workers(request: pytest.FixtureRequest) -> None:
    request.node.stash[WORKERS_BEFORE] = len(Worker.started)


# a throwaway redis-server on a free port, started on first use (see the redis_url fixture)
redis_proc = factories.redis_proc(port=None)


@pytest.fixture(scope="session")
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def server(openai_server: OpenAIServer) -> Iterator[OpenAIServer]:
    """The shared OpenAI double, clean for this test; what the test scripts ends with it,
    so a test that uses ``openai_server`` as it stands never inherits a fault."""
    openai_server.reset()
    yield openai_server
    openai_server.reset()


@pytest.fixture
def settings(server: OpenAIServer, tmp_path: object) -> Settings:
    return Settings(
        openai_api_key=SECRET_MARKER,
        openai_base_url=server.base_url,
        sqlite_path=f"{tmp_path}/memory.db",
        memory_outbox_path=f"{tmp_path}/outbox.db",
        openai_read_timeout_s=5.0,
    )


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[ConnectionPool]:
    pool = get_pool(settings)
    yield pool
    await pool.aclose()


# -- servers the suite starts itself ---------------------------------------------------------


def in_a_thread(coro: Any) -> Any:
    """Run ``coro`` to its end on a loop of its own: a fixture may be set up from inside a
    running test loop."""
    with ThreadPoolExecutor(1) as executor:
        return executor.submit(asyncio.run, coro).result(60)


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A superuser DSN: TEST_DATABASE_URL, or a throwaway server for this test session."""
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
    import uuid

    name = f"agent_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    in_a_thread(admin(f'CREATE DATABASE "{name}"'))
    dsn = database_dsn(pg_admin_dsn, name)
    try:
        in_a_thread(migrate(dsn))
        yield dsn
    finally:
        in_a_thread(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgrest(pg_dsn: str) -> Iterator[PostgrestServer]:
    """PostgREST over the test database, with Supabase's roles."""
    with PostgrestServer(pg_dsn, SUPABASE_TEST_JWT_SECRET) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres", "supabase"])
async def backend_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Settings for each memory backend in turn, with an empty store."""
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
async def memory(backend_settings: Settings) -> AsyncIterator[MemoryService]:
    """The memory service on each backend in turn, with its pool; closed afterwards."""
    pool = get_pool(backend_settings)
    service = await open_memory_service(pool, backend_settings)
    yield service
    await service.aclose()
    await pool.aclose()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of a module's room worker: its memory, outbox and phrases."""
    return tmp_path_factory.mktemp("room-worker")


@pytest.fixture(scope="module")
def worker(livekit: LiveKitServer, openai_server: OpenAIServer, workdir: Path) -> Iterator[Worker]:
    """`python agent.py start` on the test LiveKit server, shared by a module's room tests."""
    with Worker(livekit, workdir, **room_env(openai_server.base_url, OPENAI_API_KEY=KEY)) as w:
        yield w


@pytest.fixture
def google() -> Iterator[GoogleDouble]:
    """Google Cloud speech over real gRPC on loopback."""
    double = GoogleDouble().start()
    yield double
    double.stop()


@pytest.fixture
def yandex() -> Iterator[YandexDouble]:
    """Yandex SpeechKit's REST API on loopback, for one account."""
    double = YandexDouble(api_key=YANDEX_KEY, folder_id=YANDEX_FOLDER).start()
    yield double
    double.stop()


@pytest.fixture(scope="session")
def vad() -> object:
    """Silero's VAD, loaded once: what cuts a session's audio into utterances."""
    from livekit.plugins import silero

    return silero.VAD.load()


@pytest.fixture
def espeak() -> None:
    """Spoken test audio needs espeak-ng: required under CI, else a skip with the reason."""
    from testbed.audio_io import espeak_available

    if not espeak_available():
        missing("espeak-ng is not installed; `make test` installs it when run as root.")
