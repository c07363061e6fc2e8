"""The schema file, applied to real PostgreSQL: idempotent, and row-level security holds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pool import get_pool
from tests.support.services import database_dsn
from tools.memory import memory_store
from tools.memory.stores.postgres import apply_migration
from tools.settings import Settings

pytestmark = pytest.mark.postgres


@pytest.fixture
async def empty_db(pg_admin_dsn: str) -> AsyncIterator[str]:
    name = f"agent_migration_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_dsn(pg_admin_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_store_applies_the_migration_to_an_empty_database(
    empty_db: str, settings: Settings
) -> None:
    from dataclasses import replace

    settings = replace(settings, memory_backend="postgres", database_url=empty_db)
    pool = get_pool(settings)
    try:
        store = await memory_store(pool, settings)
        await store.ping()
    finally:
        await pool.aclose()
    conn = await asyncpg.connect(empty_db)
    try:
        await apply_migration(conn)  # a second run changes nothing and does not fail
        indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'memories'")
        rls = await conn.fetchval("SELECT relrowsecurity FROM pg_class WHERE relname = 'memories'")
    finally:
        await conn.close()
    assert "memories_user_updated" in {r["indexname"] for r in indexes}
    assert rls is True


async def test_row_level_security_shows_a_signed_in_user_only_their_rows(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    role = f"memory_user_{uuid.uuid4().hex[:6]}"
    try:
        await apply_migration(conn)
        await conn.execute(
            "INSERT INTO memories (user_id, category, key, value) VALUES "
            "('alice', 'FACT', 'name', 'Alice'), ('bob', 'FACT', 'name', 'Bob')"
        )
        await conn.execute(f"CREATE ROLE {role} NOLOGIN")
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON memories TO {role}")
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {role}")
            await conn.execute(
                "SELECT set_config('request.jwt.claims', '{\"sub\": \"alice\"}', true)"
            )
            visible = await conn.fetch("SELECT user_id, value FROM memories")
            deleted = await conn.execute("DELETE FROM memories WHERE user_id = 'bob'")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO memories (user_id, category, key, value) "
                    "VALUES ('bob', 'FACT', 'x', 'y')"
                )
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {role}")
            anonymous = await conn.fetch("SELECT * FROM memories")
        remaining = await conn.fetchval("SELECT count(*) FROM memories")
    finally:
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE IF EXISTS {role}")
        await conn.close()

    assert [(r["user_id"], r["value"]) for r in visible] == [("alice", "Alice")]
    assert deleted == "DELETE 0"
    assert anonymous == []
    assert remaining == 2
