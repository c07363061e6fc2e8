"""A person in a LiveKit room, as the LiveKit Python SDK lets a test be one: a microphone
that speaks espeak-ng sentences in real time, ears on the agent's audio track (with the
time of every sound), and eyes on the transcription stream ``lk.transcription``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import api, rtc
from livekit.agents.types import (
    ATTRIBUTE_AGENT_STATE,
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
    TOPIC_TRANSCRIPTION,
)
from livekit.agents.voice.remote_session import TOPIC_SESSION_MESSAGES

from room.livekit_server import API_KEY, API_SECRET
from tools.dispatch import dispatch_metadata

from .audio_io import SAMPLE_RATE, silence
from .waiting import wait_until

logger = logging.getLogger(__name__)

# int16 RMS; espeak speech and the test server's tone are in the thousands, silence is 0
SOUND_RMS = 200.0
CHUNK_FRAMES = 5  # 100 ms of speech per capture
SOURCE_CLOSE_WAIT_S = 10.0
LISTEN_FRAME_MS = 20  # the agent's audio as it is heard: a sound's start known to 20 ms


def token(identity: str, room: str, *, agent: str | None = None, named: str | None = "") -> str:
    """A join token, as the room page signs one: ``agent`` dispatches that agent to the room
    when it is created, naming the person it is for (``named``: someone else; None: nobody)."""
    grant = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
    )
    if agent:
        person = identity if named == "" else named
        metadata = dispatch_metadata(person) if person is not None else ""
        grant = grant.with_room_config(
            api.RoomConfiguration(
                agents=[api.RoomAgentDispatch(agent_name=agent, metadata=metadata)]
            )
        )
    return grant.to_jwt()


@dataclass
class Line:
    """One finished line of transcription: who said it (``agent`` or ``user``) and what."""

    speaker: str
    text: str
    at: float


@dataclass
class Heard:
    """What the person heard from the agent: sounds (start times) and their total length."""

    sound_starts: list[float] = field(default_factory=list)
    sound_s: float = 0.0
    peak_rms: float = 0.0
    last_sound_at: float | None = None


class Person:
    def __init__(
        self,
        url: str,
        identity: str,
        room: str,
        *,
        agent: str | None = None,
        access_token: str | None = None,  # one a page gave, instead of one signed here
        lead_s: float = 0.2,
    ) -> None:
        """``lead_s``: the audio the microphone keeps queued ahead of what is heard; more
        survives longer stalls of this process's event loop (many people in one process)."""
        self.url = url
        self.agent = agent
        self.access_token = access_token
        self.lead_s = lead_s
        self.identity = identity
        self.room_name = room
        self.room = rtc.Room()
        self.heard = Heard()
        self.lines: list[Line] = []
        self.agent_states: list[str] = []
        self.agent_state_at: list[tuple[str, float]] = []  # each change, when it arrived
        self.speech_ended_at: list[float] = []
        self.underruns = 0  # gaps the microphone let into speech (this process stalled)
        # what came on livekit's remote-session topic (its session events and answers)
        self.session_messages: list[bytes] = []
        self.agent_identity: str | None = None
        self.agent_left = asyncio.Event()
        self._source = rtc.AudioSource(SAMPLE_RATE, 1)
        self._queue: asyncio.Queue[list[rtc.AudioFrame]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._mic_track_sid: str | None = None
        self._mic: asyncio.Task[None] | None = None

    async def join(self) -> Person:
        self.room.on("track_subscribed", self._on_track)
        self.room.on("participant_attributes_changed", self._on_attributes)
        self.room.on("participant_connected", self._on_participant)
        self.room.on("participant_disconnected", self._on_left)
        self.room.register_text_stream_handler(TOPIC_TRANSCRIPTION, self._on_text)
        self.room.register_byte_stream_handler(TOPIC_SESSION_MESSAGES, self._on_session_message)
        await self.room.connect(
            self.url,
            self.access_token or token(self.identity, self.room_name, agent=self.agent),
        )
        for participant in self.room.remote_participants.values():
            self._on_participant(participant)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        publication = await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self._mic_track_sid = publication.sid
        self._mic = self._spawn(self._microphone())
        return self

    async def leave(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.room.disconnect()
        await self._close_source()

    async def _close_source(self) -> None:
        """livekit's native audio-source thread has been seen spinning at real-time
        priority, and closing the source then waits for it forever inside a native call on
        this loop: the suite hung. Closed on a daemon thread instead, such a person leaves
        after ``SOURCE_CLOSE_WAIT_S`` and the process can still exit."""
        loop = asyncio.get_running_loop()
        closed = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if closed.done():
                return
            if error is None:
                closed.set_result(None)
            else:
                closed.set_exception(error)

        def close() -> None:
            error: BaseException | None = None
            try:
                asyncio.run(self._source.aclose())
            except Exception as exc:  # said on the test's loop, not lost on this thread
                error = exc
            loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=close, name="audio-source-close", daemon=True).start()
        try:
            await asyncio.wait_for(closed, SOURCE_CLOSE_WAIT_S)
        except TimeoutError:
            logger.warning(
                "%s: livekit's audio source did not close within %.0f s; leaving it",
                self.identity,
                SOURCE_CLOSE_WAIT_S,
            )

    async def __aenter__(self) -> Person:
        return await self.join()

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()

    # -- speaking ----------------------------------------------------------------------

    def say(self, frames: list[rtc.AudioFrame]) -> None:
        """Speak these frames next, in real time; silence plays before and after."""
        self._queue.put_nowait(frames)

    async def say_and_wait(self, frames: list[rtc.AudioFrame]) -> float:
        """Speak and return when the last frame went out (the end of speech)."""
        mic = self._mic
        assert mic is not None, "join the room first"
        count = len(self.speech_ended_at)
        self.say(frames)
        await self.until(lambda: len(self.speech_ended_at) > count or mic.done(), 60, "speaking")
        if mic.done():  # say so at once, not as a minute of silence
            error = None if mic.cancelled() else mic.exception()
            raise AssertionError(f"{self.identity}: the microphone stopped: {error!r}")
        ended = self.speech_ended_at[-1]
        await asyncio.sleep(max(ended - time.perf_counter(), 0))  # the last of it is heard
        return ended

    async def _microphone(self) -> None:
        # the source plays what is queued in real time; audio queued ahead lets the test's
        # loop stall (a busy machine, several people in one process) without the source
        # filling the speech with silence, which a VAD would hear as a pause mid-sentence
        current: list[rtc.AudioFrame] = []
        last_voiced = 0.0
        dry = False
        while True:
            # the source ran dry mid-speech: a gap the agent heard. Counted once per gap: after
            # one, the SDK's estimate of what is queued stays at 0 for a few captures more
            was_dry, dry = dry, bool(current) and self._source.queued_duration == 0
            if dry and not was_dry:
                self.underruns += 1
            if not current and not self._queue.empty():
                current = list(self._queue.get_nowait())
            # several frames to one capture: each capture is a round trip through the SDK
            chunk, current = current[:CHUNK_FRAMES], current[CHUNK_FRAMES:]
            if chunk:
                # when this chunk starts to be heard: after what is queued ahead of it
                starts_at = time.perf_counter() + self._source.queued_duration
                await self._source.capture_frame(_joined(chunk))
                offset = 0.0
                for frame in chunk:
                    offset += frame.duration
                    if _rms(frame) >= SOUND_RMS:
                        last_voiced = starts_at + offset
                if not current:
                    # the end of speech is the last voiced frame, not the clip's trailing silence
                    self.speech_ended_at.append(last_voiced)
            else:
                await self._source.capture_frame(QUIET)
            ahead = self._source.queued_duration - self.lead_s
            if ahead > 0:
                await asyncio.sleep(ahead)

    # -- hearing -----------------------------------------------------------------------

    def _on_participant(self, participant: rtc.RemoteParticipant) -> None:
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            self.agent_identity = participant.identity
            self.agent_left.clear()
            self._on_attributes({}, participant)

    def _on_left(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self.agent_identity:
            self.agent_left.set()

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        state = participant.attributes.get(ATTRIBUTE_AGENT_STATE)
        if state and (not self.agent_states or self.agent_states[-1] != state):
            self.agent_states.append(state)
            self.agent_state_at.append((state, time.perf_counter()))

    def _on_track(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, frame_size_ms=LISTEN_FRAME_MS)
            self._spawn(self._listen(stream))

    async def _listen(self, stream: rtc.AudioStream) -> None:
        silent_s = 1.0
        try:
            async for event in stream:
                frame = event.frame
                rms = _rms(frame)
                now = time.perf_counter()
                if rms >= SOUND_RMS:
                    # a new sound after a pause is a new utterance of the agent
                    if silent_s >= 0.3:
                        self.heard.sound_starts.append(now)
                    self.heard.sound_s += frame.duration
                    self.heard.peak_rms = max(self.heard.peak_rms, rms)
                    self.heard.last_sound_at = now
                    silent_s = 0.0
                else:
                    silent_s += frame.duration
        finally:
            await stream.aclose()

    def _on_text(self, reader: rtc.TextStreamReader, sender: str) -> None:
        attributes = reader.info.attributes or {}

        async def read() -> None:
            text = await reader.read_all()
            if attributes.get(ATTRIBUTE_TRANSCRIPTION_FINAL) == "false" or not text.strip():
                return
            track = attributes.get(ATTRIBUTE_TRANSCRIPTION_TRACK_ID)
            speaker = "user" if track and track == self._mic_track_sid else "agent"
            self.lines.append(Line(speaker, text.strip(), time.perf_counter()))

        self._spawn(read())

    def _on_session_message(self, reader: rtc.ByteStreamReader, sender: str) -> None:
        async def read() -> None:
            self.session_messages.append(b"".join([chunk async for chunk in reader]))

        self._spawn(read())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- what a test asks ----------------------------------------------------------------

    def said_by_agent(self) -> list[str]:
        return [line.text for line in self.lines if line.speaker == "agent"]

    def first_sound_after(self, moment: float) -> float | None:
        return next((t for t in self.heard.sound_starts if t > moment), None)

    async def first_sound_within(self, moment: float, limit_s: float) -> float | None:
        """The agent's first sound after ``moment``, waited for until ``limit_s`` after it."""
        left_s = max(0.0, moment + limit_s - time.perf_counter())
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: self.first_sound_after(moment), left_s, every_s=0.02)
        return self.first_sound_after(moment)

    async def until_quiet(self, quiet_s: float = 1.0, limit_s: float = 15.0) -> None:
        """Until the agent has been silent for ``quiet_s``: what it was saying played out."""
        deadline = time.perf_counter() + limit_s
        while time.perf_counter() < deadline:
            last = self.heard.last_sound_at
            if last is not None and time.perf_counter() - last >= quiet_s:
                return
            await asyncio.sleep(0.05)

    async def until(self, condition: object, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.identity}: timed out after {timeout_s:.0f} s waiting for {what}; "
                    f"heard {self.said_by_agent()!r}, states {self.agent_states!r}"
                )
            await asyncio.sleep(0.05)


def _joined(frames: list[rtc.AudioFrame]) -> rtc.AudioFrame:
    if len(frames) == 1:
        return frames[0]
    return rtc.AudioFrame(
        b"".join(bytes(f.data) for f in frames),
        sample_rate=frames[0].sample_rate,
        num_channels=1,
        samples_per_channel=sum(f.samples_per_channel for f in frames),
    )


def _rms(frame: rtc.AudioFrame) -> float:
    samples = np.frombuffer(bytes(frame.data), dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


QUIET = _joined([silence() for _ in range(CHUNK_FRAMES)])
