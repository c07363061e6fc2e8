"""Who the conversation is with: the person a room job waits for, and the room page's view
of the pool, answered over RPC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from livekit import rtc
from livekit.agents import JobContext

logger = logging.getLogger(__name__)


async def wait_for_person(ctx: JobContext, timeout_s: float) -> rtc.RemoteParticipant | None:
    """The person this job is for: the first one in the room (livekit's own wait has no
    timeout, and a room nobody joins must not hold a job process forever)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await ctx.wait_for_participant()
    except TimeoutError:
        logger.info("nobody joined room %s within %.0f s; ending the job", ctx.room.name, timeout_s)
        return None


def register_pool_panel(room: rtc.Room, report: Callable[[], Awaitable[str]]) -> None:
    """The report the agent's tool reads out, over RPC, for a page in the room (the panel of
    `make room`)."""

    async def pool_stats(_: rtc.RpcInvocationData) -> str:
        return await report()

    room.local_participant.register_rpc_method("getConnectionPoolStats", pool_stats)
