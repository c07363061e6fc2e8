"""A short acknowledgement when the model is slow to say its first word.

The deadline of a provider chain is for failing over; on the last provider the turn
waits for the model. The person should not wait in silence meanwhile: after
``after_s`` without a token they hear "One moment." (a segment of its own, so it is
spoken at once), and nothing extra when the answer comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from livekit.agents import FlushSentinel, llm

Chunk = llm.ChatChunk | str | FlushSentinel


def _says_something(chunk: Any) -> bool:
    if isinstance(chunk, str):
        return bool(chunk)
    if isinstance(chunk, llm.ChatChunk):
        delta = chunk.delta
        return delta is not None and bool(delta.content or delta.tool_calls)
    return False


async def acknowledged(
    source: AsyncIterable[Chunk], *, after_s: float, text: str
) -> AsyncIterator[Chunk]:
    """``source``, preceded by ``text`` if its first word takes longer than ``after_s``."""
    chunks = aiter(source)
    held: list[Chunk] = []  # role-only chunks that came before the first word

    async def first_word() -> bool:
        async for chunk in chunks:
            held.append(chunk)
            if _says_something(chunk):
                return True
        return False

    waiting = asyncio.ensure_future(first_word())
    try:
        done, _ = await asyncio.wait({waiting}, timeout=after_s)
        if not done:
            yield text
            yield FlushSentinel()
        await waiting
        for chunk in held:
            yield chunk
        async for chunk in chunks:
            yield chunk
    finally:
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
