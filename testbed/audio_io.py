"""Real audio into an AgentSession, and the agent's audio out, without a LiveKit room."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
import wave
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents.voice import io

SAMPLE_RATE = 24000
FRAME_MS = 20


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak_to_frames(
    text: str, workdir: Path, *, tone_hz: int | None = None
) -> list[rtc.AudioFrame]:
    """Synthesize ``text`` with espeak-ng and cut it into 20 ms frames at 24 kHz.

    ``tone_hz`` mixes a quiet sine under the voice: a signature the test server's STT reads
    back (``OpenAIServer.transcripts_by_tone``) to tell several speakers apart.
    """
    path = workdir / f"speech-{uuid.uuid4().hex[:8]}.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, timeout=30)
    with wave.open(str(path), "rb") as source:
        rate = source.getframerate()
        pcm = source.readframes(source.getnframes())
    resampler = rtc.AudioResampler(input_rate=rate, output_rate=SAMPLE_RATE, num_channels=1)
    resampled = resampler.push(
        rtc.AudioFrame(pcm, sample_rate=rate, num_channels=1, samples_per_channel=len(pcm) // 2)
    )
    resampled += resampler.flush()
    samples = np.concatenate([np.frombuffer(bytes(f.data), dtype=np.int16) for f in resampled])
    path.unlink(missing_ok=True)
    if tone_hz is not None:
        t = np.arange(samples.size) / SAMPLE_RATE
        voiced = np.abs(samples.astype(np.float64)) > 0
        tone = 1500 * np.sin(2 * np.pi * tone_hz * t) * voiced
        samples = np.clip(samples + tone, -32768, 32767).astype(np.int16)
    step = SAMPLE_RATE * FRAME_MS // 1000
    return [
        rtc.AudioFrame(
            samples[i : i + step].tobytes(),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
            samples_per_channel=len(samples[i : i + step]),
        )
        for i in range(0, len(samples) - step + 1, step)
    ]


def silence() -> rtc.AudioFrame:
    step = SAMPLE_RATE * FRAME_MS // 1000
    return rtc.AudioFrame(
        bytes(step * 2), sample_rate=SAMPLE_RATE, num_channels=1, samples_per_channel=step
    )


class SpeechInput(io.AudioInput):
    """Plays queued utterances in real time, silence in between, like a microphone."""

    def __init__(self) -> None:
        super().__init__(label="test speech")
        self._queue: asyncio.Queue[list[rtc.AudioFrame]] = asyncio.Queue()
        self._current: list[rtc.AudioFrame] = []
        self._next_at: float | None = None
        self.speech_ended_at: float | None = None
        self._closed = False

    def say(self, frames: list[rtc.AudioFrame]) -> None:
        self._queue.put_nowait(frames)

    def close(self) -> None:
        self._closed = True

    async def __anext__(self) -> rtc.AudioFrame:
        if self._closed:
            raise StopAsyncIteration
        now = time.perf_counter()
        self._next_at = now if self._next_at is None else self._next_at
        if self._next_at > now:
            await asyncio.sleep(self._next_at - now)
        self._next_at += FRAME_MS / 1000
        if not self._current and not self._queue.empty():
            self._current = list(self._queue.get_nowait())
        if self._current:
            frame = self._current.pop(0)
            if not self._current:
                self.speech_ended_at = time.perf_counter()
            return frame
        return silence()


class CapturedAudio(io.AudioOutput):
    """Keeps every frame the agent speaks; playout is instant."""

    def __init__(self) -> None:
        super().__init__(
            label="captured",
            capabilities=io.AudioOutputCapabilities(pause=False),
            sample_rate=SAMPLE_RATE,
        )
        self.frames: list[rtc.AudioFrame] = []
        self.first_frame_at: list[float] = []
        self._segment_s = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if not self._segment_s:
            self.first_frame_at.append(time.perf_counter())
            self.on_playback_started(created_at=time.time())
        await super().capture_frame(frame)
        self.frames.append(frame)
        self._segment_s += frame.duration

    def flush(self) -> None:
        super().flush()
        played, self._segment_s = self._segment_s, 0.0
        self.on_playback_finished(playback_position=played, interrupted=False)

    def clear_buffer(self) -> None:
        played, self._segment_s = self._segment_s, 0.0
        self.on_playback_finished(playback_position=played, interrupted=True)

    @property
    def seconds(self) -> float:
        return sum(f.duration for f in self.frames)
