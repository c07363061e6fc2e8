"""The pool's clients over TLS: they trust the store the environment names, and the CA
bundle is parsed once per process, before a job (a job's event loop never pays for it)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from pool import ConnectionPool, warm_tls
from testbed.openai_server import OpenAIServer
from tools.settings import Settings


@pytest.fixture
def https_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    with OpenAIServer(ssl_context=server_context) as server:
        yield server


async def test_clients_reach_a_server_the_named_store_trusts_with_contexts_made_ahead(
    https_server: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warm_tls()
    made: list[object] = []
    create = ssl.create_default_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        made.append(args)
        return create(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    settings = Settings(
        openai_api_key="sk-test",
        openai_base_url=https_server.base_url,
        sqlite_path=str(tmp_path / "memory.db"),
        memory_outbox_path=str(tmp_path / "outbox.db"),
    )
    pool = ConnectionPool(settings)
    try:
        client = await pool.openai()
        assert [m.id async for m in client.models.list()]
        session = await pool.http()
        async with session.get(f"{https_server.base_url}/models") as response:
            assert response.status == 200
    finally:
        await pool.aclose()
    assert made == [], "a client built its own TLS context on the job's loop"
