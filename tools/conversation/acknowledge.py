"""A short acknowledgement when the model is slow to say its first word.

The deadline of a provider chain is for failing over; on the last provider the turn
waits for the model. The person should not wait in silence meanwhile: after
``after_s`` without a token they hear "One moment." (a segment of its own, so it is
spoken at once), and nothing extra when the answer comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from livekit import rtc
from livekit.agents import FlushSentinel, llm

from pool import cancel_and_wait

from .playback import play

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
        await cancel_and_wait([waiting])


class Acknowledgement:
    """The acknowledgement of one agent: said in the reply's place while the model is slow
    (:meth:`reply`, for ``llm_node``), and played from its pre-rendered audio when it has
    some (:meth:`speak`, for ``tts_node``), at once, TTS or not.

    The segment to play is known by a claim the reply leaves when it says the text, not by
    its words: a reply that happens to say the same words is synthesized as usual.
    """

    def __init__(
        self,
        *,
        after_s: float | None,
        text: str,
        audio: Callable[[], list[rtc.AudioFrame] | None] = lambda: None,
    ) -> None:
        self.after_s = after_s
        self.text = text
        self._audio = audio
        self._said = False  # the next segment to be spoken is this acknowledgement

    async def reply(self, source: AsyncIterable[Chunk]) -> AsyncIterator[Chunk]:
        if self.after_s is None:
            async for chunk in source:
                yield chunk
            return
        try:
            async for chunk in acknowledged(source, after_s=self.after_s, text=self.text):
                if chunk is self.text:
                    self._said = True
                yield chunk
        except BaseException:
            # a reply dropped before its acknowledgement was spoken (a discarded preemptive
            # generation, an interruption) must not leave the claim to the next reply
            self._said = False
            raise

    async def speak(
        self,
        text: AsyncIterable[str],
        synthesize: Callable[[AsyncIterable[str]], AsyncIterable[rtc.AudioFrame]],
    ) -> AsyncIterator[rtc.AudioFrame]:
        frames = self._audio() if self._said else None
        self._said = False
        if frames is None:
            async for frame in synthesize(text):
                yield frame
            return
        async for _ in text:  # the segment's text is the acknowledgement; its audio is ready
            pass
        async for frame in play(frames):
            yield frame
