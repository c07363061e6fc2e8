"""The test people's microphone: what a test or benchmark person says reaches the room whole
even while their process's event loop stalls (eight people share one in `make bench-turns`),
and when it does not, the person counts the gap instead of the agent hearing a pause that
nobody made."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from room.livekit_server import LiveKitServer
from testbed.audio_io import speak_to_frames
from testbed.person import Person

pytestmark = pytest.mark.slow


async def speak_through_stalls(livekit: LiveKitServer, workdir: Path, lead_s: float) -> int:
    """Say a sentence while this loop stalls three times for 0.35 s; the gaps counted."""
    frames = speak_to_frames("I would like to book a table for two people tonight", workdir)
    room = f"microphone-{uuid.uuid4().hex[:8]}"
    async with Person(livekit.url, "speaker", room, lead_s=lead_s) as speaker:
        await asyncio.sleep(0.5)  # the microphone is publishing
        speaking = asyncio.ensure_future(speaker.say_and_wait(frames))
        for _ in range(3):
            await asyncio.sleep(0.3)
            time.sleep(0.35)  # noqa: ASYNC251 - the stall under test
        await speaking
        return speaker.underruns


async def test_speech_queued_ahead_outlasts_a_stalled_loop(
    livekit: LiveKitServer, tmp_path: Path
) -> None:
    assert await speak_through_stalls(livekit, tmp_path, lead_s=0.5) == 0


async def test_a_microphone_that_ran_dry_mid_speech_says_so(
    livekit: LiveKitServer, tmp_path: Path
) -> None:
    # each stall outlasts what is queued: one gap each, however many captures it took to end
    assert 1 <= await speak_through_stalls(livekit, tmp_path, lead_s=0.1) <= 3
