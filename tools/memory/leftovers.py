"""The outbox of this machine outside any job: the writes a killed process left behind.

A job's outbox replays what is pending when it starts, so leftovers reach the store with
the next conversation on the machine. A worker that starts again after a crash stores them
at once (:func:`store_left_writes`), so a machine that takes no conversation for a while,
or is being drained for good, strands nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from pool import get_pool

from .model import MemoryStore
from .outbox import Outbox
from .stores import memory_store

if TYPE_CHECKING:
    from ..settings import Settings

logger = logging.getLogger(__name__)


@asynccontextmanager
async def machine_outbox(settings: Settings) -> AsyncIterator[Outbox]:
    """This machine's outbox file, with the memory store behind it on a pool of its own."""
    pool = get_pool(settings)

    async def store() -> MemoryStore:
        return await memory_store(pool, settings)

    outbox = await Outbox(settings.memory_outbox_path, store).open()
    try:
        yield outbox
    finally:
        await outbox.close()
        await pool.aclose()


async def store_left_writes(settings: Settings, deadline_s: float = 30.0) -> tuple[int, int]:
    """Store what an earlier process on this machine left pending; (stored, still waiting).
    Writes set aside stay set aside: they wait for `memory replay`, after a fix."""
    path = settings.memory_outbox_path
    async with machine_outbox(settings) as outbox:
        if not await outbox.pending():
            return 0, 0
        left = await outbox.drain(deadline_s)
        stored = outbox.flushed
    if stored:
        logger.info(
            "stored %d memory writes an earlier run on this machine left in %s", stored, path
        )
    if left:
        logger.warning(
            "%d memory writes in %s still wait for the store; the next conversation on this "
            "machine retries them",
            left,
            path,
        )
    return stored, left
