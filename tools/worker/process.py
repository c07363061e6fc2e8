"""The job process itself: what it loads before its first job, and keeps out of the
collector's way once it is ready."""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import platform
from types import ModuleType

import pydantic
from livekit.agents.tokenize.basic import hyphenate_word
from livekit.agents.vad import VAD
from livekit.plugins import silero

# modules the first turn would import on the job's event loop, each 100-230 ms (livekit's
# loop monitor named them): imported in prewarm, before any person waits
FIRST_TURN_IMPORTS = (
    "anyio._backends._asyncio",
    "anyio.abc",
    "anyio.streams.memory",
    "livekit.agents.llm.async_toolset",
    "openai.lib._chat_completion_resources",
    "openai.lib.streaming.chat",
    "openai.pagination",
    # openai's client imports its resources when first touched (``client.chat``)
    "openai.resources.audio.audio",
    "openai.resources.audio.speech",
    "openai.resources.audio.transcriptions",
    "openai.resources.chat.chat",
    "openai.resources.chat.completions.completions",
    "numpy.fft",  # livekit's transcript sync measures the speaking rate with it
)
# modules whose pydantic models a turn builds on first use: openai's and livekit's build
# their validators lazily (``defer_build``), 5-20 ms a model family, on the job's loop
FIRST_TURN_MODELS = (
    "livekit.agents.llm.chat_context",
    "livekit.agents.llm.llm",
    "livekit.plugins.openai.stt",
    "openai.types.chat.chat_completion_chunk",
    "openai.types.chat.chat_completion_message_tool_call",
    "openai.types.completion_usage",
)


def import_ahead() -> None:
    for name in FIRST_TURN_IMPORTS:
        with contextlib.suppress(ImportError):  # a module an upgrade moved costs its stall
            importlib.import_module(name)


@functools.cache
def silence_detector(silence_s: float) -> VAD:
    """Silero's VAD, once per process image: opening its ONNX session takes ~30 ms of CPU.
    Opened in livekit's forkserver, every job process inherits it; onnxruntime starts no
    thread for it (its one intra-op thread is the caller's), so the fork copies no held lock."""
    return silero.VAD.load(min_silence_duration=silence_s)


def build_first_use() -> None:
    """What livekit and openai build in a process the first time a turn needs it, built
    here once: in livekit's forkserver every job process starts with it, instead of each
    paying 80-100 ms of CPU on its event loop while a burst of rooms starts."""
    # the hyphenation patterns livekit's transcript sync splits the agent's words with, 55 ms
    hyphenate_word("conversation")
    # openai's request headers name the platform: ``uname -p`` is a subprocess per process
    platform.platform()
    for name in FIRST_TURN_MODELS:
        with contextlib.suppress(ImportError):
            build_models(importlib.import_module(name))
    from openai.pagination import AsyncPage
    from openai.types import Model

    # the pool's first probe lists the models: the generic page it reads them into
    AsyncPage[Model]
    with contextlib.suppress(ImportError, AttributeError):  # openai's own; an upgrade may move it
        shape_requests()


def shape_requests() -> None:
    """openai's client reads the type hints of each request's parameters (and of every
    message and tool shape in them) the first time it sends one: a request of each kind."""
    from openai._utils import maybe_transform
    from openai.types.audio import speech_create_params
    from openai.types.chat import completion_create_params

    call = {"id": "call", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": "instructions"},
        {"role": "user", "content": "words"},
        {"role": "assistant", "content": "words", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call", "content": "result"},
    ]
    tool = {"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}
    chat = {
        "messages": messages,
        "model": "model",
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [tool],
        "tool_choice": "auto",
    }
    maybe_transform(chat, completion_create_params.CompletionCreateParamsStreaming)
    speech = {"input": "words", "model": "model", "voice": "ash", "response_format": "mp3"}
    maybe_transform(speech, speech_create_params.SpeechCreateParams)


def build_models(module: ModuleType) -> None:
    for value in list(vars(module).values()):
        if (
            isinstance(value, type)
            and issubclass(value, pydantic.BaseModel)
            and value is not pydantic.BaseModel
            and not value.__pydantic_complete__
        ):
            # A model that cannot be built here is built on its first use, as before;
            # a warm-up must never stop a worker from starting.
            with contextlib.suppress(Exception):
                value.model_rebuild(raise_errors=False)


def settle_heap() -> None:
    """What was imported and loaded lives as long as the process: keep the collector off it,
    or one full collection of that heap (over 100 ms here) stalls the event loop mid-turn."""
    gc.collect()
    gc.freeze()
