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
