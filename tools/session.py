"""Per-session state the agent's tools reach through ``RunContext.userdata``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit.agents import AgentSession, CloseEvent

from pool import ConnectionPool, Settings

if TYPE_CHECKING:
    from .background import PostTurnWorker
    from .memory import MemoryService


@dataclass
class SessionData:
    pool: ConnectionPool
    settings: Settings
    user_id: str
    memory: MemoryService | None = None
    post_turn: PostTurnWorker | None = None


class GracefulSession(AgentSession[SessionData]):
    """An AgentSession that, when its job ends it (a worker drain, SIGTERM), lets the reply
    being spoken finish for up to ``drain_s`` instead of cutting it off mid-word."""

    def __init__(self, *, drain_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drain_s = drain_s
        self._running = False
        self._closed = asyncio.Event()
        self.on("close", self._on_close)

    def _on_close(self, _: CloseEvent) -> None:
        self._running = False
        self._closed.set()

    async def start(self, *args: Any, **kwargs: Any) -> Any:
        self._closed.clear()
        result = await super().start(*args, **kwargs)
        self._running = True
        return result

    async def aclose(self) -> None:
        if self._running:
            self.shutdown(drain=True)
            try:
                async with asyncio.timeout(self.drain_s):
                    await self._closed.wait()
            except TimeoutError:
                pass
        await super().aclose()
