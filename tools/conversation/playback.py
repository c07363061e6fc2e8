"""Pre-rendered audio, played the way a session plays TTS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from livekit import rtc


def pcm_frames(pcm: bytes, rate: int, channels: int, frame_ms: int = 20) -> list[rtc.AudioFrame]:
    """16-bit PCM cut into frames of ``frame_ms`` (the last one shorter)."""
    step = rate * frame_ms // 1000 * channels * 2
    return [
        rtc.AudioFrame(
            pcm[i : i + step],
            sample_rate=rate,
            num_channels=channels,
            samples_per_channel=len(pcm[i : i + step]) // (2 * channels),
        )
        for i in range(0, len(pcm) - 2 * channels + 1, step)
    ]


async def play(frames: list[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    """Pre-rendered audio as a session plays it. Each frame gives the event loop a turn:
    livekit works on every frame it is handed (the transcript's speaking rate, a few ms a
    window), and seconds of audio handed over at once stalled the VAD for a second or two."""
    for frame in frames:
        yield frame
        await asyncio.sleep(0)
