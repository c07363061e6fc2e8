"""Run several AI calls at once, under a concurrency limit and one deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pool import cancel_and_wait

T = TypeVar("T")


@dataclass(frozen=True)
class CallResult(Generic[T]):
    """One call's outcome: a value, an error, or the deadline."""

    value: T | None = None
    error: BaseException | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out


async def parallel_ai_calls(
    *calls: Callable[[], Awaitable[T]],
    timeout: float,
    limit: int = 5,
) -> list[CallResult[T]]:
    """Run ``calls`` concurrently, at most ``limit`` at a time, for at most ``timeout`` s.

    Results come back in call order. A failure or a timeout is a value, not an exception,
    so one bad call never costs the others' results; what is still running at the deadline
    is cancelled and awaited before this returns.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1.")
    gate = asyncio.Semaphore(limit)

    async def run(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    tasks = [asyncio.create_task(run(call)) for call in calls]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, timeout=timeout)
    finally:
        # on the deadline, or if our caller is cancelled: nothing is left running
        await cancel_and_wait(tasks)

    results: list[CallResult[T]] = []
    for task in tasks:
        if task.cancelled():
            results.append(CallResult(timed_out=True))
        elif (error := task.exception()) is not None:
            results.append(CallResult(error=error))
        else:
            results.append(CallResult(value=task.result()))
    return results
