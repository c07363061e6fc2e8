"""Waiting on state another process, thread or database holds, where no event can reach:
poll with a deadline, and say what never happened."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    condition: Callable[[], T | Awaitable[T]],
    timeout_s: float = 20.0,
    *,
    what: str = "the condition",
    every_s: float = 0.05,
) -> T:
    """The first true value of ``condition()`` (sync or async) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(every_s)


def wait_until_sync(
    condition: Callable[[], T],
    timeout_s: float = 20.0,
    *,
    what: str = "the condition",
    every_s: float = 0.05,
) -> T:
    """:func:`wait_until` for a thread with no event loop."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)
    return value
