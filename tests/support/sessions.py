"""A session as a new job process starts one, for tests that type to it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent import Assistant, prepare_assistant
from pool import get_pool
from tools.conversation import SessionData, build_session
from tools.memory import MemoryService, open_memory_service
from tools.settings import Settings


async def typed_turn(
    settings: Settings,
    user_id: str,
    text: str,
    *,
    before: Callable[[MemoryService], Awaitable[object]] | None = None,
) -> Assistant:
    """A new pool and memory service, ``before`` run on the memory, the assistant prepared
    from the store as at session start, and one typed turn; all closed after it."""
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    try:
        if before is not None:
            await before(memory)
        assistant = await prepare_assistant(memory, user_id)
        userdata = SessionData(pool=pool, settings=settings, user_id=user_id, memory=memory)
        async with await build_session(pool, settings, userdata, vad=None) as session:
            await session.start(assistant)
            await session.run(user_input=text)
    finally:
        await memory.aclose()
        await pool.aclose()
    return assistant
