"""The memory service on every backend: SQLite, real PostgreSQL, Supabase (REST double)."""

from __future__ import annotations

import time

import pytest

from pool import ClientState, ConnectionPool, get_pool
from tools.memory import (
    MAX_PER_CATEGORY,
    InvalidMemory,
    MemoryService,
    Write,
    batch_memory_operations,
    memory_store,
)
from tools.settings import Settings


def values(memories: list) -> dict[tuple[str, str], str]:  # type: ignore[type-arg]
    return {(m.category, m.key): m.value for m in memories}


async def test_save_recall_and_overwrite(memory: MemoryService) -> None:
    assert await memory.save("ada", "FACT", "name", "Ada Lovelace") == "saved"
    await memory.save("ada", "preference", "drink", "tea")
    await memory.save("ada", "FACT", "name", "Ada King")

    assert values(await memory.recall("ada")) == {
        ("FACT", "name"): "Ada King",
        ("PREFERENCE", "drink"): "tea",
    }
    assert values(await memory.recall("ada", category="PREFERENCE")) == {
        ("PREFERENCE", "drink"): "tea"
    }
    assert values(await memory.recall("ada", key="name")) == {("FACT", "name"): "Ada King"}
    only = (await memory.recall("ada", category="FACT", key="name"))[0]
    assert only.updated_at >= only.created_at


async def test_forget_removes_only_that_memory(memory: MemoryService) -> None:
    await memory.save("ada", "FACT", "name", "Ada")
    await memory.save("ada", "FACT", "city", "London")
    await memory.forget("ada", "FACT", "name")
    assert values(await memory.recall("ada")) == {("FACT", "city"): "London"}


async def test_users_cannot_read_overwrite_or_delete_each_other(memory: MemoryService) -> None:
    await memory.save("alice", "FACT", "name", "Alice")
    await memory.save("bob", "FACT", "name", "Bob")
    await memory.forget("bob", "FACT", "city")
    await memory.save("bob", "FACT", "name", "Bob again")
    await memory.forget("bob", "FACT", "name")

    assert values(await memory.recall("alice")) == {("FACT", "name"): "Alice"}
    assert await memory.recall("bob") == []
    batch = await batch_memory_operations(
        memory, "bob", [{"type": "get", "category": "FACT", "key": "name"}]
    )
    assert batch == [{"ok": True, "value": None}]


async def test_one_text_in_two_unicode_spellings_is_one_user_and_one_key(
    memory: MemoryService,
) -> None:
    # é as one character, and as e with a combining accent
    await memory.save("Zo\u00eb", "FACT", "caf\u00e9", "black")
    await memory.save("Zoe\u0308", "FACT", "cafe\u0301", "with milk")
    assert values(await memory.recall("Zoe\u0308")) == {("FACT", "caf\u00e9"): "with milk"}
    assert (await memory.get("Zo\u00eb", "FACT", "cafe\u0301")) is not None
    # case is part of an identity, as LiveKit compares them
    assert await memory.recall("zo\u00eb") == []


async def test_a_key_is_found_without_its_category_however_many_memories_there_are(
    memory: MemoryService,
) -> None:
    await memory.save("ada", "FACT", "birthday", "10 December")
    ops = [
        {"type": "save", "category": "CONTEXT", "key": f"topic {i}", "value": f"talked {i}"}
        for i in range(300)
    ]
    assert all(result.ok for result in await memory.batch("ada", ops))
    # older than the newest 200 a full recall returns
    assert values(await memory.recall("ada", key="birthday")) == {
        ("FACT", "birthday"): "10 December"
    }
    assert values(await memory.recall("ada", key="Topic 299")) == {
        ("CONTEXT", "topic 299"): "talked 299"
    }
    assert await memory.recall("ada", key="anniversary") == []


async def test_a_category_keeps_its_newest_memories_and_evicts_the_least_recently_confirmed(
    memory: MemoryService,
) -> None:
    store = await memory.store()
    stamp = time.time() - 10_000
    await store.apply([Write("ada", "FACT", "name", "Ada", stamp)])
    await store.apply(
        [
            Write("ada", "CONTEXT", f"topic {i:03}", f"talked {i}", stamp + i)
            for i in range(MAX_PER_CATEGORY)
        ]
    )
    # the oldest is confirmed again (the user said it again); then one more arrives
    await store.apply([Write("ada", "CONTEXT", "topic 000", "talked again", stamp + 9_000)])
    await memory.save("ada", "CONTEXT", "new topic", "just now")

    kept = {m.key for m in await store.recall("ada", "CONTEXT", limit=10_000)}
    assert len(kept) == MAX_PER_CATEGORY
    assert {"topic 000", "new topic"} <= kept
    assert "topic 001" not in kept  # the least recently confirmed made room
    assert values(await memory.recall("ada", "FACT")) == {("FACT", "name"): "Ada"}
    # an update of a kept memory evicts nothing
    await memory.save("ada", "CONTEXT", "topic 002", "updated")
    assert len(await store.recall("ada", "CONTEXT", limit=10_000)) == MAX_PER_CATEGORY


@pytest.mark.parametrize(
    ("category", "key", "value", "message"),
    [
        ("SECRET", "k", "v", "Unknown category"),
        ("FACT", "", "v", "key cannot be empty"),
        ("FACT", "k" * 129, "v", "limit is 128"),
        ("FACT", "k", "v" * 4097, "limit is 4096"),
        ("FACT", "k", 42, "value must be text"),
        ("FACT", None, "v", "key must be text"),
        ("FACT", "k", "nul\x00byte", "NUL"),
        ("FACT", "k\ud83d", "v", "key contains an unpaired surrogate"),
        ("FACT", "k", "broken emoji \ude00", "value contains an unpaired surrogate"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    memory: MemoryService, category: object, key: object, value: object, message: str
) -> None:
    with pytest.raises(InvalidMemory, match=message):
        await memory.save("ada", category, key, value)
    assert await memory.recall("ada") == []


async def test_batch_answers_in_order_and_fails_items_alone(memory: MemoryService) -> None:
    await memory.save("ada", "FACT", "city", "London")
    ops = [
        {"type": "save", "category": "FACT", "key": "name", "value": "Ada"},
        {"type": "get", "category": "FACT", "key": "city"},
        {"type": "save", "category": "NOPE", "key": "x", "value": "y"},
        {"type": "delete", "category": "FACT", "key": "city"},
        {"type": "get", "category": "FACT", "key": "missing"},
        {"type": "explode"},
        "not even a dict",
        {"type": "save", "category": "FACT", "key": "pet", "value": "a cat \ud83d"},
    ]
    results = await batch_memory_operations(memory, "ada", ops)

    assert [r["ok"] for r in results] == [True, True, False, True, True, False, False, False]
    assert "unpaired surrogate" in results[7]["error"]
    assert results[1]["value"] == "London"
    assert results[4]["value"] is None
    assert "Unknown category" in results[2]["error"]
    assert "Unknown operation type" in results[5]["error"]
    assert values(await memory.recall("ada")) == {("FACT", "name"): "Ada"}


async def test_batch_coalesces_saves_into_one_store_call(memory: MemoryService) -> None:
    pool = memory.pool
    store = await memory.store()
    meter = pool.meter(store.name)
    before = meter.metrics.counts.requests

    ops = [
        {"type": "save", "category": "FACT", "key": f"k{i}", "value": f"v{i}"} for i in range(100)
    ]
    ops += [{"type": "get", "category": "FACT", "key": f"k{i}"} for i in range(50)]
    results = await batch_memory_operations(memory, "ada", ops)

    assert all(r["ok"] for r in results)
    # one multi-row upsert and one multi-key read, whatever the order they ran in
    assert meter.metrics.counts.requests - before == 2
    assert len(await memory.recall("ada")) == 100


async def test_an_older_write_never_replaces_a_newer_one(memory: MemoryService) -> None:
    store = await memory.store()
    now = time.time()
    await store.apply([Write("ada", "FACT", "name", "new", now)])
    await store.apply([Write("ada", "FACT", "name", "old", now - 60)])  # a late replay
    assert values(await memory.recall("ada")) == {("FACT", "name"): "new"}

    await store.apply([Write("ada", "FACT", "name", None, now + 1)])  # deleted later
    await store.apply([Write("ada", "FACT", "name", "older still", now - 120)])
    assert await memory.recall("ada") == []
    await store.apply([Write("ada", "FACT", "name", "after the delete", now + 2)])
    assert values(await memory.recall("ada")) == {("FACT", "name"): "after the delete"}


async def test_change_listeners_hear_about_saves(memory: MemoryService) -> None:
    heard: list[tuple[str, frozenset[str]]] = []

    async def listener(user_id: str, categories: frozenset[str]) -> None:
        heard.append((user_id, categories))

    memory.on_change(listener)
    await memory.save("ada", "FACT", "name", "Ada")
    await memory.forget("ada", "preference", "tea")
    assert heard == [("ada", frozenset({"FACT"})), ("ada", frozenset({"PREFERENCE"}))]


async def test_store_is_cached_by_the_pool_and_in_its_stats(backend_settings: Settings) -> None:
    pool: ConnectionPool = get_pool(backend_settings)
    try:
        first = await memory_store(pool, backend_settings)
        second = await memory_store(pool, backend_settings)
        assert first is second
        report = await pool.warm()
        assert report[backend_settings.memory_backend].startswith("ok")
        entry = pool.stats().resources[backend_settings.memory_backend]
        assert entry.client is ClientState.OPEN and entry.health == "HEALTHY"
    finally:
        await pool.aclose()
