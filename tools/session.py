"""Per-session state the agent's tools reach through ``RunContext.userdata``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
