"""A returning person's greeting, kept as audio beside its text, so they hear the agent's
first words without a TTS round trip.

The audio is stored in the cache's shared layer (the machine's SQLite file, or Redis across
machines) per user and voice, with a digest of the text it says: a greeting rebuilt because
the person's memories changed has new text, so its old audio is never played; it is dropped
with the text (:func:`forget_greeting_audio`). On a miss the greeting is spoken through the
TTS as usual and rendered once more in the background for the next visit.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, tts

from pool import Cache, cancel_and_wait, redact

from .playback import pcm_frames, play

logger = logging.getLogger(__name__)


def audio_key(user_id: str, voice: str) -> str:
    return f"greeting-audio:{voice}:{user_id}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class GreetingAudio:
    def __init__(self, cache: Cache, voice: str) -> None:
        """``voice``: what the audio sounds like (the TTS chain, model and voice, as a digest):
        a change of voice renders anew."""
        self.cache = cache
        self.voice = voice
        self._rendering: asyncio.Task[None] | None = None

    async def frames(self, user_id: str, text: str) -> list[rtc.AudioFrame] | None:
        """The stored audio of exactly ``text`` for this user and voice, or None."""
        stored: Any = await self.cache.get(audio_key(user_id, self.voice))
        if not isinstance(stored, dict) or stored.get("text") != _digest(text):
            return None
        pcm = base64.b64decode(stored["pcm"])
        return pcm_frames(pcm, int(stored["rate"]), int(stored["channels"]))

    def render_later(self, user_id: str, text: str, voice: tts.TTS[Any]) -> None:
        """Synthesize ``text`` and store it, off the conversation's path."""
        if self._rendering is None:
            self._rendering = asyncio.create_task(
                self._render(user_id, text, voice), name="greeting-audio"
            )

    async def _render(self, user_id: str, text: str, voice: tts.TTS[Any]) -> None:
        try:
            frames = [event.frame async for event in voice.synthesize(text)]
        except Exception as exc:  # the next visit tries again
            logger.info("could not render the greeting's audio: %s", redact(str(exc))[:200])
            return
        if not frames:
            return
        first = frames[0]
        value = {
            "text": _digest(text),
            "rate": first.sample_rate,
            "channels": first.num_channels,
            "pcm": base64.b64encode(b"".join(bytes(f.data) for f in frames)).decode(),
        }
        # large: in the shared layer only, not in this process's memory
        await self.cache.put(audio_key(user_id, self.voice), value, local=False)

    async def aclose(self) -> None:
        await cancel_and_wait([self._rendering])


def say_greeting(
    session: AgentSession[Any],
    audio: GreetingAudio,
    user_id: str,
    words: str,
    frames: list[rtc.AudioFrame] | None,
) -> None:
    """A returning person's greeting: from ``frames``, its stored audio, when this voice said
    it before (no TTS round trip), else through the TTS, and kept as audio for the next
    visit."""
    if frames is not None:
        session.say(words, audio=play(frames))
    else:
        session.say(words)
        if session.tts is not None:
            audio.render_later(user_id, words, session.tts)


async def forget_greeting_audio(cache: Cache, user_id: str, voice: str) -> None:
    await cache.invalidate(audio_key(user_id, voice))
