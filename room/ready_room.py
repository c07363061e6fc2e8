"""A room kept ready for the next person: the agent dispatched to it and connected before
anyone asks, so a person given it hears their greeting without waiting out the dispatch.

What a room the page opens on request costs before the first word, measured here: about
200 ms inside livekit-server before the worker hears of the job (its job request waits for
better offers from other workers), then the agent's own connection to the room. A ready room
has paid both. When a person asks, the page names them in the room's metadata (through the
server API: only the page can) and gives them its token; the agent, waiting for that name
(``tools.dispatch``), loads their memories and greeting's audio while they connect, and a
fresh room is readied for the next person. Someone who asks while none is ready gets a room
opened for them, as before.

A ready room holds a job, so it takes one conversation of a worker's ``MAX_CONVERSATIONS``.
It is replaced before livekit would close it for having no person in it, and closed when
the page stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass

import aiohttp
from livekit import api

from pool import cancel_and_wait
from tools.dispatch import dispatch_metadata, ready_room_metadata

from .rooms import RoomConfig, access_token, open_room

logger = logging.getLogger(__name__)

# livekit closes a room with only its agent in it this long after creating it
READY_ROOM_LIFE_S = 600
RENEW_BEFORE_S = 60  # a room this close to its end is replaced, not given out
AGENT_ARRIVAL_S = 30.0
RETRY_S = 5.0


@dataclass(frozen=True)
class _Ready:
    room: str
    expires_at: float  # time.monotonic()


class ReadyRoom:
    def __init__(
        self,
        config: RoomConfig,
        livekit: api.LiveKitAPI,
        *,
        life_s: float = READY_ROOM_LIFE_S,
    ) -> None:
        if not config.agent_name:
            raise ValueError("a ready room needs the agent's name to dispatch it")
        self.config = config
        self.livekit = livekit
        self.life_s = life_s
        self._ready: _Ready | None = None
        self._is_ready = asyncio.Event()
        self._given = asyncio.Event()
        self._keeping: asyncio.Task[None] | None = None

    @property
    def ready_room(self) -> str | None:
        """The room the next person would be given, if one is ready."""
        return self._ready.room if self._ready is not None else None

    def start(self) -> None:
        """Keep a room ready from now on, in the background."""
        if self._keeping is None:
            self._keeping = asyncio.create_task(self._keep_one_ready(), name="ready-room")

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether a room is ready within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._is_ready.wait()
        except TimeoutError:
            return False
        return True

    async def take(self, name: str) -> dict[str, str]:
        """A room for ``name``: the ready one, named for them, if there is one; else one
        opened for them now. Its address, name and their token."""
        ready, self._ready = self._ready, None
        self._is_ready.clear()
        self._given.set()  # the keeper readies the next one
        if ready is None:
            return await open_room(self.config, self.livekit, name)
        # about to close for want of a person, or its worker went away meanwhile
        if time.monotonic() > ready.expires_at or not await self._agent_in(ready.room):
            await self._close(ready.room)
            return await open_room(self.config, self.livekit, name)
        await self.livekit.room.update_room_metadata(
            api.UpdateRoomMetadataRequest(room=ready.room, metadata=dispatch_metadata(name))
        )
        token = access_token(self.config, name, ready.room)
        return {"url": self.config.livekit_url, "room": ready.room, "token": token}

    async def _keep_one_ready(self) -> None:
        """Open a room with the agent in it; when it is given out, or before livekit would
        close it, the next."""
        while True:
            try:
                ready = await self._open()
            except (api.TwirpError, aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("could not ready a room: %s; trying again", exc)
                ready = None
            if ready is None:
                await asyncio.sleep(RETRY_S)
                continue
            self._given.clear()
            self._ready = ready
            self._is_ready.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, ready.expires_at - time.monotonic())):
                    await self._given.wait()
            if self._ready is ready:  # nobody took it in time
                self._ready = None
                self._is_ready.clear()
                await self._close(ready.room)

    async def _open(self) -> _Ready | None:
        room = f"voice-{secrets.token_hex(4)}"
        created = time.monotonic()
        dispatch = api.RoomAgentDispatch(
            agent_name=self.config.agent_name or "", metadata=ready_room_metadata()
        )
        await self.livekit.room.create_room(
            api.CreateRoomRequest(name=room, empty_timeout=int(self.life_s), agents=[dispatch])
        )
        deadline = created + AGENT_ARRIVAL_S
        try:
            while time.monotonic() < deadline:
                if await self._agent_in(room):
                    return _Ready(room, created + self.life_s - RENEW_BEFORE_S)
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:  # the page is stopping: the room goes with it
            await self._close(room)
            raise
        logger.warning(
            "no agent came to a ready room within %.0f s; is a worker running?", AGENT_ARRIVAL_S
        )
        await self._close(room)
        return None

    async def _agent_in(self, room: str) -> bool:
        them = await self.livekit.room.list_participants(api.ListParticipantsRequest(room=room))
        return any(p.kind == api.ParticipantInfo.Kind.AGENT for p in them.participants)

    async def _close(self, room: str) -> None:
        try:
            await self.livekit.room.delete_room(api.DeleteRoomRequest(room=room))
        except (api.TwirpError, aiohttp.ClientError, TimeoutError) as exc:
            logger.info("could not close ready room %s: %s", room, exc)

    async def aclose(self) -> None:
        """Stop readying; close the room nobody was given."""
        await cancel_and_wait([self._keeping])
        ready, self._ready = self._ready, None
        if ready is not None:
            await self._close(ready.room)
