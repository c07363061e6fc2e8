"""What a job's first turn would build on its event loop is built once in livekit's
forkserver (``tools.worker.preload``), so every job process forked from it starts with it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.console import ROOT

# run in a fresh interpreter: this test process has built much of it already
PROBE = """
import json, platform, sys
import {preload}
from livekit.agents import llm
from livekit.agents.tokenize import _basic_hyphenator
from livekit.plugins.openai import stt
from openai._utils._transform import get_type_hints
from openai.types.chat import ChatCompletionChunk
from tools.worker import silence_detector

print(json.dumps({{
    "hyphenator": _basic_hyphenator._get_hyphenator.cache_info().currsize,
    "chat_message": llm.ChatMessage.__pydantic_complete__,
    "session_update": stt.SessionUpdateEvent.__pydantic_complete__,
    "chunk": ChatCompletionChunk.__pydantic_complete__,
    "uname": platform._uname_cache is not None,
    "numpy_fft": "numpy.fft" in sys.modules,
    "openai_chat": "openai.resources.chat.completions.completions" in sys.modules,
    "request_hints": get_type_hints.cache_info().currsize,
    "vad": silence_detector.cache_info().currsize,
}}))
"""


def first_use_state(preload: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(preload=preload)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_job_process_starts_with_what_its_first_turn_would_build() -> None:
    built = first_use_state("tools.worker.preload")
    assert built["hyphenator"] == 1  # livekit's transcript sync, 55 ms on first use
    assert built["chat_message"] and built["session_update"] and built["chunk"], built
    assert built["uname"], "openai's headers would run `uname -p` in each job"
    assert built["numpy_fft"] and built["openai_chat"], built
    assert isinstance(built["request_hints"], int) and built["request_hints"] > 0, built
    assert built["vad"] == 1, "each job process would open silero's ONNX session itself"


def test_without_the_preload_the_first_turn_builds_it() -> None:
    # the state the test above checks is not there by itself: the program's imports alone
    # leave it to the first turn
    bare = first_use_state("agent")
    assert bare["hyphenator"] == 0 and not bare["chat_message"] and not bare["chunk"], bare
    assert bare["vad"] == 0, bare
