"""The servers a test needs: found (a TEST_*_URL), or started for the test session; a
missing one skips on a developer's machine and fails loudly under CI. And the databases'
plumbing the fixtures share."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pool import ConnectionPool
from testbed.postgrest import PostgrestServer
from testbed.tcp_proxy import TcpProxy
from tools.memory.stores import apply_migration
from tools.settings import Settings

# the key every test's settings carry: it must never show in any output
SECRET_MARKER = "sk-test-SECRET-MARKER-7f3a9c"
# the local PostgREST's project secret; its anon and service keys are signed with it
SUPABASE_TEST_JWT_SECRET = "local-test-jwt-secret-0b7c2f9e4d6a8131"


def missing(message: str) -> NoReturn:
    """Skip on a developer's machine without the service; fail loudly under CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI=true requires it.", pytrace=False)
    pytest.skip(message)


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def given_server(variable: str, default_port: int) -> str | None:
    """The URL in ``variable``, if set; a server named there must answer."""
    given = os.environ.get(variable)
    if given:
        parts = urlsplit(given)
        if not service_reachable(parts.hostname or "127.0.0.1", parts.port or default_port):
            missing(f"{variable} names {parts.hostname}:{parts.port}, which does not answer")
    return given


def database_dsn(admin_dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))


def dsn_port(dsn: str) -> int:
    return urlsplit(dsn).port or 5432


async def stored_memories(dsn: str, user_id: str) -> dict[str, str]:
    """key → value of what PostgreSQL holds for ``user_id``."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch("SELECT key, value FROM memories WHERE user_id = $1", user_id)
    finally:
        await conn.close()
    return {r["key"]: r["value"] for r in found}


def through(proxy: TcpProxy, dsn: str) -> str:
    """``dsn`` with its host and port those of ``proxy``."""
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migration(conn)
    finally:
        await conn.close()


async def truncate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.memories')")
        if exists:
            await conn.execute("TRUNCATE public.memories, public.memory_tombstones")
    finally:
        await conn.close()


def supabase_settings(settings: Settings, postgrest: PostgrestServer) -> Settings:
    """The agent on the local PostgREST with the anon key and per-user tokens (RLS)."""
    return replace(
        settings,
        memory_backend="supabase",
        supabase_url=postgrest.url,
        supabase_key=postgrest.anon_key,
        supabase_jwt_secret=SUPABASE_TEST_JWT_SECRET,
    )


def settings_of(pool: ConnectionPool) -> Settings:
    """The agent's settings a test's pool was made with."""
    assert isinstance(pool.settings, Settings), "this pool was made with the pool's settings only"
    return pool.settings


# the account of the Yandex SpeechKit double
YANDEX_KEY = "yandex-api-key-5e2c"
YANDEX_FOLDER = "b1gfolder"
