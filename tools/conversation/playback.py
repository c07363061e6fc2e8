"""Pre-rendered audio, played the way a session plays TTS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from livekit import rtc


async def play(frames: list[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    """Pre-rendered audio as a session plays it. Each frame gives the event loop a turn:
    livekit works on every frame it is handed (the transcript's speaking rate, a few ms a
    window), and seconds of audio handed over at once stalled the VAD for a second or two."""
    for frame in frames:
        yield frame
        await asyncio.sleep(0)
