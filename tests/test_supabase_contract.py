"""The Supabase store against PostgREST over real PostgreSQL: the requests it sends, and
row-level security holding on the agent's own path."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from postgrest import APIError
from postgrest.types import ReturnMethod

from pool import get_pool
from testbed.postgrest import PostgrestServer
from tests.support.services import supabase_settings, truncate
from tools.memory import (
    MemoryService,
    Write,
    batch_memory_operations,
    memory_store,
    open_memory_service,
)
from tools.memory.stores.supabase import SupabaseStore
from tools.settings import Settings

pytestmark = pytest.mark.postgres
CONFLICT = "user_id,category,key"
MINIMAL = ReturnMethod.minimal


@pytest.fixture
async def memory(postgrest: PostgrestServer, settings: Settings) -> AsyncIterator[MemoryService]:
    postgrest.reset()
    await truncate(postgrest.dsn)
    settings = supabase_settings(settings, postgrest)
    pool = get_pool(settings)
    service = await open_memory_service(pool, settings)
    yield service
    await service.aclose()
    await pool.aclose()


async def test_a_batch_is_one_select_and_one_upsert_and_a_delete_is_one_request(
    memory: MemoryService, postgrest: PostgrestServer
) -> None:
    ops = [
        {"type": "save", "category": "FACT", "key": f"k,{i}", "value": f"v{i}"} for i in range(20)
    ]
    ops.append({"type": "get", "category": "FACT", "key": 'k,"0'})
    ops.append({"type": "get", "category": "FACT", "key": "k,1"})
    results = await batch_memory_operations(memory, "ada", ops)
    forgot = await memory.forget("ada", "FACT", "k,2")

    assert all(r["ok"] for r in results) and forgot == "saved"
    assert results[-1]["value"] == "v1"
    select, upsert, tomb = postgrest.requests()
    assert (select.method, select.table) == ("GET", "memories")
    assert ("user_id", "eq.ada") in select.params
    assert ("key", 'in.("k,\\"0","k,1")') in select.params
    assert (upsert.method, upsert.table, len(upsert.body)) == ("POST", "memories", 20)
    assert ("on_conflict", "user_id,category,key") in upsert.params
    assert {"resolution=merge-duplicates", "return=minimal"} <= upsert.prefer
    assert (tomb.method, tomb.table) == ("POST", "memory_tombstones")
    # every request went as the signed-in user, under row-level security
    assert {seen.role for seen in (select, upsert, tomb)} == {"authenticated"}
    assert await memory.get("ada", "FACT", "k,2") is None
    assert (await memory.get("ada", "FACT", "k,3")).value == "v3"  # type: ignore[union-attr]


async def test_a_query_that_names_another_user_reads_and_writes_nothing_of_theirs(
    memory: MemoryService,
) -> None:
    """As if a bug filtered by the wrong id: the token, not the filter, decides."""
    await memory.save("bob", "FACT", "pin", "4321")
    store = await memory.store()
    assert isinstance(store, SupabaseStore)

    as_alice = await store._table("memories", "alice").select("*").eq("user_id", "bob").execute()
    assert as_alice.data == []
    everyone = await store._table("memories", "alice").select("*").limit(1).execute()
    assert everyone.data == []
    anonymous = await store._table("memories", None).select("*").eq("user_id", "bob").execute()
    assert anonymous.data == []

    stamp = {"user_id": "bob", "category": "FACT", "key": "pin", "value": "0000"}
    stamp |= {"created_at": "2030-01-01T00:00:00+00:00", "updated_at": "2030-01-01T00:00:00+00:00"}
    with pytest.raises(APIError) as refused:
        upsert = store._table("memories", "alice").upsert(
            [stamp], on_conflict=CONFLICT, returning=MINIMAL
        )
        await upsert.execute()
    assert refused.value.code == "42501"  # row-level security, a refusal and not an outage
    assert not store.is_outage(refused.value)
    assert (await memory.get("bob", "FACT", "pin")).value == "4321"  # type: ignore[union-attr]


async def test_a_batch_of_many_users_is_sent_as_each_user(
    memory: MemoryService, postgrest: PostgrestServer
) -> None:
    store = await memory.store()
    writes = [
        Write(f"user-{i % 3}", "FACT", f"k{i}", f"v{i}", 1_800_000_000.0 + i) for i in range(9)
    ]
    await store.apply(writes)
    for i in range(3):
        found = await memory.recall(f"user-{i}")
        assert sorted(m.key for m in found) == sorted(f"k{j}" for j in range(i, 9, 3))
    assert {seen.role for seen in postgrest.requests()} == {"authenticated"}


async def test_the_service_role_key_still_works_for_admin_work(
    postgrest: PostgrestServer, settings: Settings
) -> None:
    postgrest.reset()
    await truncate(postgrest.dsn)
    admin = replace(
        supabase_settings(settings, postgrest),
        supabase_key=postgrest.service_key,
        supabase_jwt_secret=None,
    )
    pool = get_pool(admin)
    try:
        store = await memory_store(pool, admin)
        await store.apply([Write("carol", "FACT", "city", "Oslo", 1_800_000_000.0)])
        found = await store.recall("carol")
    finally:
        await pool.aclose()
    assert [m.value for m in found] == ["Oslo"]
    assert {seen.role for seen in postgrest.requests()} == {"service_role"}


SAVE_1 = Write("rita", "FACT", "city", "Rome", 1_800_000_001.0)
DELETE_2 = Write("rita", "FACT", "city", None, 1_800_000_002.0)
SAVE_3 = Write("rita", "FACT", "city", "Oslo", 1_800_000_003.0)
DELETE_4 = Write("rita", "FACT", "city", None, 1_800_000_004.0)


@pytest.mark.parametrize("backend", ["postgres", "supabase"])
@pytest.mark.parametrize(
    ("writes", "expected"),
    [((SAVE_1, DELETE_2, SAVE_3, DELETE_4), None), ((SAVE_1, DELETE_2, SAVE_3), "Oslo")],
    ids=["ends-deleted", "ends-saved"],
)
async def test_every_replay_order_ends_with_the_newest_write(
    backend: str,
    writes: tuple[Write, ...],
    expected: str | None,
    request: pytest.FixtureRequest,
    settings: Settings,
) -> None:
    """Each write sent alone, in every order, as a replayed outbox may send them; the rules
    live in the migrations' triggers on the server."""
    if backend == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        configured = replace(settings, memory_backend="postgres", database_url=dsn)
    else:
        postgrest = request.getfixturevalue("postgrest")
        dsn = postgrest.dsn
        configured = supabase_settings(settings, postgrest)
    pool = get_pool(configured)
    try:
        store = await memory_store(pool, configured)
        for order in itertools.permutations(writes):
            await truncate(dsn)
            for write in order:
                await store.apply([write])
            found = await store.get_many("rita", [("FACT", "city")])
            assert [m.value for m in found] == ([expected] if expected else []), order
    finally:
        await pool.aclose()
