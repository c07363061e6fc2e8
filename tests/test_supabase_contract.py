"""The exact PostgREST requests the Supabase store sends, as recorded by the double."""

from __future__ import annotations

from dataclasses import replace

from pool import Settings, get_pool
from tests.conftest import SUPABASE_TEST_KEY
from tests.support.postgrest_double import PostgrestDouble
from tools.memory import batch_memory_operations
from tools.stores import open_memory_service


async def test_batch_is_one_upsert_and_one_select(
    postgrest_double: PostgrestDouble, settings: Settings
) -> None:
    postgrest_double.reset()
    settings = replace(
        settings,
        memory_backend="supabase",
        supabase_url=postgrest_double.url,
        supabase_key=SUPABASE_TEST_KEY,
    )
    pool = get_pool(settings)
    memory = await open_memory_service(pool)
    try:
        ops = [
            {"type": "save", "category": "FACT", "key": f"k,{i}", "value": f"v{i}"}
            for i in range(20)
        ]
        ops.append({"type": "get", "category": "FACT", "key": 'k,"0'})
        ops.append({"type": "get", "category": "FACT", "key": "k,1"})
        results = await batch_memory_operations(memory, "ada", ops)
        forgot = await memory.forget("ada", "FACT", "k,2")
    finally:
        await memory.aclose()
        await pool.aclose()

    assert all(r["ok"] for r in results) and forgot == "saved"
    assert results[-1]["value"] == "v1"
    select, upsert, tomb, delete = postgrest_double.seen
    assert (select.method, select.table) == ("GET", "memories")
    assert ("user_id", "eq.ada") in select.params
    assert ("key", 'in.("k,\\"0","k,1")') in select.params
    assert (upsert.method, upsert.table, len(upsert.body)) == ("POST", "memories", 20)
    assert ("on_conflict", "user_id,category,key") in upsert.params
    assert {"resolution=merge-duplicates", "return=minimal"} <= upsert.prefer
    assert (tomb.method, tomb.table) == ("POST", "memory_tombstones")
    assert delete.method == "DELETE"
    assert [k for k, _ in delete.params][:3] == ["user_id", "category", "key"]
    assert ("key", "eq.k,2") in delete.params
    assert ("ada", "FACT", "k,2") not in postgrest_double.rows
