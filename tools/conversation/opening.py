"""The agent's first words in a room: "we were cut off" to a person whose last conversation
was lost with its machine, otherwise their greeting (kept as text and audio) or the generic
one, whichever is ready within the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents import AgentSession

from pool import ConnectionPool, cancel_and_wait

from ..memory import Memory
from .greeting import GENERIC_GREETING, first_words, greeting_for
from .greeting_audio import GreetingAudio, say_greeting
from .phrases import Phrases
from .resume import RESUMED_GREETING, ConversationMark, compose_resumption

if TYPE_CHECKING:
    from ..settings import Settings


@dataclass
class Opening:
    words: asyncio.Task[str]
    resumed: bool  # the person was cut off: the words are about that break
    audio: GreetingAudio
    user_id: str
    # the greeting's stored audio, looked up as soon as its words are known: None when it
    # has none yet, or it is not the greeting that will be said
    stored: asyncio.Task[list[rtc.AudioFrame] | None] | None = None

    @classmethod
    async def begin(
        cls,
        pool: ConnectionPool,
        mark: ConversationMark | None,
        user_id: str,
        memories: Sequence[Memory],
        settings: Settings,
        *,
        voice: str,
    ) -> Opening:
        """The words composed (or found in the cache) in the background, while the session
        starts, and their audio looked up after them; ``mark`` None (the console) is never a
        resumption."""
        resumed = mark is not None and await mark.was_cut_off(
            memories, window_s=settings.resume_window_s
        )
        if resumed:
            words = compose_resumption(pool, memories, model=settings.llm_model)
        else:
            words = greeting_for(pool, user_id, memories, model=settings.llm_model)
        opening = cls(
            asyncio.create_task(words, name="opening-words"),
            resumed,
            GreetingAudio(pool.cache, voice),
            user_id,
        )
        if not resumed:
            opening.stored = asyncio.create_task(opening._stored_audio(), name="opening-audio")
        return opening

    async def _stored_audio(self) -> list[rtc.AudioFrame] | None:
        try:
            words = await asyncio.shield(self.words)
        except Exception:  # said generically; first_words logs why
            return None
        return await self.audio.frames(self.user_id, words)

    async def say(
        self, session: AgentSession[Any], phrases: Phrases, *, deadline_s: float
    ) -> tuple[str, GreetingAudio | None]:
        """Say them; the words said, and the greeting's audio being kept, if any."""
        fallback = RESUMED_GREETING if self.resumed else GENERIC_GREETING
        words = await first_words(self.words, deadline_s=deadline_s, fallback=fallback)
        if self.resumed:
            session.say(words)  # about this one break: never kept as the person's greeting
            return words, None
        if words == GENERIC_GREETING:
            await cancel_and_wait([self.stored])
            phrases.say(session, "greeting", remember=True)
            return words, None
        assert self.stored is not None
        frames = await self.stored
        say_greeting(session, self.audio, self.user_id, words, frames)
        return words, self.audio

    async def aclose(self) -> None:
        await cancel_and_wait([self.words, self.stored])
