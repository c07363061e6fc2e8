"""Ending tasks the way every part of this project needs it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """Cancel each task that is still running and wait until all of them have ended.

    Their results and errors are dropped (a cancelled task's end is not news), so none is
    reported as never retrieved; the caller's own cancellation still propagates.
    """
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
