"""Opening a SQLite file the way every part of this project needs it."""

from __future__ import annotations

from pathlib import Path

import aiosqlite


async def connect(path: str) -> aiosqlite.Connection:
    """WAL (readers and a writer across processes), FULL sync (a commit survives power
    loss: "durable before acknowledged"), and a writer that waits for the lock."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, timeout=10.0)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA busy_timeout=10000")
    return db
