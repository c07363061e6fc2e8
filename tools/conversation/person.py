"""Who the conversation is with: the person a room job waits for, the memory user they are,
and the room page's view of the pool, answered over RPC to that person alone."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Awaitable, Callable

from livekit import rtc
from livekit.agents import JobContext

from ..dispatch import expected_person

logger = logging.getLogger(__name__)

# a person at a browser or an app, and a caller on the phone; not another agent, an egress
# or ingress stream, or a connector bridging some other service's users into the room
SERVED_KINDS = [
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
]
# the attribute livekit's SIP service gives a caller: the number they call from
SIP_CALLER_NUMBER = "sip.phoneNumber"


async def wait_for_person(
    ctx: JobContext, timeout_s: float, *, identity: str | None = None
) -> rtc.RemoteParticipant | None:
    """The person this job is for: ``identity``, or else the first one in the room (livekit's
    own wait has no timeout, and a room nobody joins must not hold a job process forever).
    ``None`` when nobody came: the wait ran out, or the room closed because the caller hung
    up first."""
    try:
        async with asyncio.timeout(timeout_s):
            return await ctx.wait_for_participant(identity=identity, kind=SERVED_KINDS)
    except TimeoutError:
        # someone else may be in the room: the job was for the person its dispatch named
        who = "nobody" if identity is None else "the person the dispatch named never"
        logger.info(
            "%s joined room %s within %.0f s; ending the job", who, ctx.room.name, timeout_s
        )
        return None
    except RuntimeError:
        if ctx.room.isconnected():
            raise
        # livekit closes an empty room: the person left before the agent arrived
        logger.info("room %s closed before anybody joined; ending the job", ctx.room.name)
        return None


async def named_in_room(room: rtc.Room) -> str | None:
    """The person a ready room's metadata names (``tools.dispatch``), waited for as long as
    the room lasts: the issuer names them when it gives the room out, and closes a room it
    never gave out; ``None`` when the room closed first."""
    named: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def check(*_: object) -> None:
        person = expected_person(room.metadata)
        if person is not None and not named.done():
            named.set_result(person)

    def closed(*_: object) -> None:
        if not named.done():
            logger.info("ready room %s closed before it was given out; ending the job", room.name)
            named.set_result(None)

    room.on("room_metadata_changed", check)
    room.on("disconnected", closed)
    try:
        check()
        if not room.isconnected():
            closed()
        return await named
    finally:
        room.off("room_metadata_changed", check)
        room.off("disconnected", closed)


def memory_user(person: rtc.RemoteParticipant) -> str:
    """The memory user a participant is: a caller is their phone number, anyone else their
    identity. Compared exactly, as the store compares keys: ``Ada`` and ``ada`` are two
    people, as they are two identities to LiveKit; only Unicode's two spellings of one
    text (NFC) are one person."""
    if person.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
        number = person.attributes.get(SIP_CALLER_NUMBER, "").strip()
        if number:
            return unicodedata.normalize("NFC", f"tel:{number}")
    return identity_user(person.identity)


def identity_user(identity: str) -> str:
    """The memory user of a participant who is not a caller."""
    return unicodedata.normalize("NFC", identity)


def register_pool_panel(room: rtc.Room, person: str, report: Callable[[], Awaitable[str]]) -> None:
    """The report the agent's tool reads out, over RPC, for the page of the person this job
    serves (the panel of `make room`); anyone else in the room is refused."""

    async def pool_stats(data: rtc.RpcInvocationData) -> str:
        if data.caller_identity != person:
            logger.info("refused getConnectionPoolStats from a participant who is not the person")
            raise rtc.RpcError(
                rtc.RpcError.ErrorCode.APPLICATION_ERROR,
                "getConnectionPoolStats answers only the person this agent serves",
            )
        return await report()

    room.local_participant.register_rpc_method("getConnectionPoolStats", pool_stats)
