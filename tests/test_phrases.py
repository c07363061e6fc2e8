"""The phrases said in trouble, as WAV files shared by every job process on the machine."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from livekit import rtc

from tools.conversation.phrases import _read_wav, _write_wav

RATE = 24000


def tone(level: int, frames: int = 25) -> list[rtc.AudioFrame]:
    samples = np.full(RATE // 50, level, dtype=np.int16).tobytes()
    return [rtc.AudioFrame(samples, RATE, 1, RATE // 50) for _ in range(frames)]


def render(path: str, level: int, times: int) -> int:
    """What one job process does on a fresh machine: render the phrase, again and again."""
    for _ in range(times):
        _write_wav(Path(path), tone(level))
    return times


def test_job_processes_rendering_one_phrase_at_once_leave_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "phrases" / "stt.wav"
    levels = (1000, 2000, 3000)
    with ProcessPoolExecutor(len(levels), mp_context=multiprocessing.get_context("spawn")) as ex:
        writers = [ex.submit(render, str(path), level, 100) for level in levels]
        seen: set[int] = set()
        while not all(w.done() for w in writers):
            if path.exists():
                frames = _read_wav(path)  # never half a file
                assert len(frames) == 25
                seen.add(int(np.frombuffer(bytes(frames[0].data), dtype=np.int16)[0]))
        assert [w.result() for w in writers] == [100, 100, 100]  # no writer failed
    assert seen <= set(levels)
    assert len(_read_wav(path)) == 25
    assert [p.name for p in path.parent.iterdir()] == ["stt.wav"]  # no temporary file left
