"""The agent's voice track, published as soon as its room is connected.

livekit's room IO publishes the agent's audio track only once the person it serves is in
the room, so a person who arrives after the agent (a ready room, a dispatch that names them)
waits for that publication, then for a second negotiation to subscribe to it: 100-150 ms of
the first word's wait, measured. Published before they arrive, the track is in what their
connection receives on joining and is subscribed with it. Frames wait for that subscription
(livekit's output holds them until someone listens), so nothing is said into an empty room.

The session is given this output (``session.output.audio``) with room IO's own turned off.
livekit keeps the output's class private: ``PRIVATE_API`` names it for
tests/test_upstream_names.py, which fails loudly if an upgrade moves it.
"""

from __future__ import annotations

import asyncio

from livekit import rtc
from livekit.agents.voice import room_io
from livekit.agents.voice.room_io._output import _ParticipantAudioOutput

from pool import cancel_and_wait

PRIVATE_API = ("livekit.agents.voice.room_io._output", "_ParticipantAudioOutput")
TRACK_NAME = "roomio_audio"  # the name room IO gives its own


class VoiceTrack:
    def __init__(self, room: rtc.Room) -> None:
        """Publish the track now, in the background; ``room`` must be connected."""
        options = room_io.AudioOutputOptions()
        self.output = _ParticipantAudioOutput(
            room,
            sample_rate=options.sample_rate,
            num_channels=options.num_channels,
            track_publish_options=options.track_publish_options,
            track_name=TRACK_NAME,
        )
        # returns once someone subscribed: until then the output holds what it is given
        self._publishing = asyncio.create_task(self.output.start(), name="voice-track")

    async def aclose(self) -> None:
        await cancel_and_wait([self._publishing])
        await self.output.aclose()
