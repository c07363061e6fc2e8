"""The rooms the page gives out: where the LiveKit server is, the token it signs for a
person, and a room opened on request with the agent sent to it at once."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from livekit import api

from tools.dispatch import dispatch_metadata

TOKEN_TTL = timedelta(hours=2)
# a room whose person never arrives closes after this; the agent in it gives up sooner
# (PARTICIPANT_WAIT_S)
ROOM_EMPTY_TIMEOUT_S = 120


@dataclass(frozen=True)
class RoomConfig:
    livekit_url: str  # as the browser reaches it
    api_key: str
    api_secret: str = field(repr=False)
    agent_name: str | None = None  # dispatch this agent to each new room by name
    # the page's key for this run, in the address `make room` prints (as local notebook
    # servers do): whoever reaches the port without it gets no token
    page_key: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)

    def page_url(self, host: str, port: int) -> str:
        # in the fragment, which the browser never sends on, so no log or Referer has it
        return f"http://{host}:{port}/#key={self.page_key}"

    @property
    def api_url(self) -> str:
        """The server API, at the address the page's livekit_url names."""
        return re.sub(r"^ws", "http", self.livekit_url)


def access_token(config: RoomConfig, name: str, room: str) -> str:
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
    )
    return (
        api.AccessToken(config.api_key, config.api_secret)
        .with_identity(name)
        .with_name(name)
        .with_grants(grants)
        .with_ttl(TOKEN_TTL)
        .to_jwt()
    )


async def open_room(config: RoomConfig, livekit: api.LiveKitAPI, name: str) -> dict[str, str]:
    """A new room for ``name``: where it is, its name, and their token.

    The agent is dispatched now, naming the person, rather than by the token when their
    connection creates the room: it connects, loads their memories and their greeting's
    audio and starts its session while they connect, and is there when they arrive."""
    room = f"voice-{secrets.token_hex(4)}"
    if config.agent_name:
        dispatch = api.RoomAgentDispatch(
            agent_name=config.agent_name, metadata=dispatch_metadata(name)
        )
        await livekit.room.create_room(
            api.CreateRoomRequest(name=room, empty_timeout=ROOM_EMPTY_TIMEOUT_S, agents=[dispatch])
        )
    return {"url": config.livekit_url, "room": room, "token": access_token(config, name, room)}
