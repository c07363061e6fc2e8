"""Writes at once on every backend: what was acknowledged is stored, what was queued is
stored or still queued, whatever else ran beside it.

The model may call saveMemory several times in one turn (livekit runs the tool calls of one
reply concurrently), and the outbox flushes beside them.
"""

from __future__ import annotations

import asyncio
import time

from tools.memory import MemoryService, Write


async def test_three_saves_at_once_are_all_stored(memory: MemoryService) -> None:
    outcomes = await asyncio.gather(
        memory.save("ada", "FACT", "name", "Ada"),
        memory.save("ada", "PREFERENCE", "drink", "tea"),
        memory.save("ada", "CONTEXT", "project", "the engine"),
    )
    assert outcomes == ["saved", "saved", "saved"]
    assert {(m.category, m.key) for m in await memory.recall("ada")} == {
        ("FACT", "name"),
        ("PREFERENCE", "drink"),
        ("CONTEXT", "project"),
    }


async def test_saves_deletes_and_outbox_flushes_interleaved_lose_nothing(
    memory: MemoryService,
) -> None:
    outbox = memory.outbox
    assert outbox is not None
    users = [f"person-{n}" for n in range(3)]
    for user in users:  # memories the deletes below remove
        for i in range(5):
            assert await memory.save(user, "FACT", f"old{i}", "to forget") == "saved"
    stamp = time.time()
    queued = [
        Write(user, "CONTEXT", f"learned{i}", f"learned {i} of {user}", stamp + i)
        for user in users
        for i in range(20)
    ]

    async def flush_repeatedly() -> None:
        for _ in range(10):
            await outbox.flush_once()
            await asyncio.sleep(0)

    saves = [
        memory.save(user, "FACT", f"k{i}", f"v{i} of {user}") for user in users for i in range(15)
    ]
    deletes = [memory.forget(user, "FACT", f"old{i}") for user in users for i in range(5)]
    background = [memory.save_later(queued[i : i + 6]) for i in range(0, len(queued), 6)]
    outcomes = await asyncio.gather(
        *saves, *deletes, *background, flush_repeatedly(), flush_repeatedly()
    )
    assert outcomes[: len(saves) + len(deletes)] == ["saved"] * (len(saves) + len(deletes))

    while await outbox.flush_once():
        pass
    for user in users:
        found = {m.key: m.value for m in await memory.recall(user)}
        assert {k: v for k, v in found.items() if k.startswith("k")} == {
            f"k{i}": f"v{i} of {user}" for i in range(15)
        }
        assert not any(k.startswith("old") for k in found), user
        learned = {k for k in found if k.startswith("learned")}
        assert learned == {f"learned{i}" for i in range(20)}, user
    assert await outbox.pending() == 0
