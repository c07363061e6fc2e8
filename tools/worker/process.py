"""The job process itself: what it loads before its first job, and keeps out of the
collector's way once it is ready."""

from __future__ import annotations

import contextlib
import gc
import importlib

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
)


def import_ahead() -> None:
    for name in FIRST_TURN_IMPORTS:
        with contextlib.suppress(ImportError):  # a module an upgrade moved costs its stall
            importlib.import_module(name)


def settle_heap() -> None:
    """What was imported and loaded lives as long as the process: keep the collector off it,
    or one full collection of that heap (over 100 ms here) stalls the event loop mid-turn."""
    gc.collect()
    gc.freeze()
