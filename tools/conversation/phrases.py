"""What the agent says when its own providers fail, kept as audio so it can be said then.

A person in a voice room cannot see a log: silence is the worst answer. The sentences
the agent may need in trouble are synthesized once through the TTS chain (at the first
warm-up on a machine, per voice) and kept as WAV files beside the memory file, so they
play even while the TTS provider is down, and instantly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from livekit import rtc
from livekit.agents import AgentSession, ErrorEvent, UserStateChangedEvent, tts

from pool import cancel_and_wait, redact

from ..settings import Settings
from .greeting import GENERIC_GREETING
from .playback import pcm_frames, play

logger = logging.getLogger(__name__)

PhraseKey = Literal["greeting", "one_moment", "stt", "llm", "tts"]

PHRASES: dict[PhraseKey, str] = {
    # a new person's first words: from audio, they need no TTS round trip
    "greeting": GENERIC_GREETING,
    "one_moment": "One moment.",
    "stt": "Sorry, I'm having trouble hearing you. Give me a moment.",
    "llm": "Sorry, I'm having trouble thinking right now. Give me a moment.",
    "tts": "Sorry, I'm having trouble with my voice. Give me a moment.",
}

_ERROR_PHRASE: dict[str, PhraseKey] = {
    "stt_error": "stt",
    "llm_error": "llm",
    "tts_error": "tts",
}


def voice_id(settings: Settings) -> str:
    """What the agent's voice is (its TTS chain, model and voice), as a short digest: audio
    rendered in one voice is never played in another."""
    chain = [
        {"name": p.name, "url": p.base_url, "model": p.model, "voice": p.voice}
        for p in settings.tts_providers
    ] or [{"url": settings.openai_base_url}]
    voice = {"chain": chain, "model": settings.tts_model, "voice": settings.tts_voice}
    return hashlib.sha256(json.dumps(voice, sort_keys=True).encode()).hexdigest()[:12]


def voice_directory(settings: Settings) -> Path:
    """One directory per voice: a change of TTS provider, model or voice renders anew."""
    return Path(settings.sqlite_path).parent / "phrases" / voice_id(settings)


class Phrases:
    """The trouble sentences as audio frames, loaded from disk or rendered once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.audio: dict[PhraseKey, list[rtc.AudioFrame]] = {}
        self._rendering: asyncio.Task[None] | None = None

    def load(self) -> None:
        for key in PHRASES:
            path = self._path(key)
            if path.exists() and key not in self.audio:
                with contextlib.suppress(OSError, wave.Error, EOFError):
                    self.audio[key] = _read_wav(path)

    async def prepare(self, voice: tts.TTS[Any]) -> None:
        """Load what is on disk and synthesize what is not. Never raises: without audio
        the sentences still go out as text and through the TTS when it works."""
        self.load()
        for key, text in PHRASES.items():
            if key in self.audio:
                continue
            try:
                frames = [event.frame async for event in voice.synthesize(text)]
            except Exception as exc:
                logger.warning("could not render %r: %s", text, redact(str(exc)))
                return
            if frames:
                self.audio[key] = frames
                await asyncio.to_thread(_write_wav, self._path(key), frames)

    def prepare_in_background(self, new_voice: Callable[[], Awaitable[tts.TTS[Any]]]) -> None:
        """:meth:`prepare` while the person is greeted; :meth:`aclose` stops it.

        ``new_voice`` makes a TTS no session holds: a session takes any failure of its own
        TTS for a failed turn, apologises into the room and counts it towards closing."""

        async def render() -> None:
            await self.prepare(await new_voice())

        if self._rendering is None:
            self._rendering = asyncio.create_task(render(), name="phrases")

    async def aclose(self) -> None:
        await cancel_and_wait([self._rendering])

    def frames(self, key: PhraseKey) -> list[rtc.AudioFrame] | None:
        return self.audio.get(key)

    def say(self, session: AgentSession[Any], key: PhraseKey, *, remember: bool = False) -> None:
        """Say a phrase: its audio when rendered (no TTS call), else through the TTS.
        ``remember``: the phrase joins the conversation the model sees."""
        frames = self.frames(key)
        if frames is None:
            session.say(PHRASES[key], add_to_chat_ctx=remember)
        else:
            session.say(PHRASES[key], audio=play(frames), add_to_chat_ctx=remember)

    def _path(self, key: PhraseKey) -> Path:
        return self.directory / f"{key}.wav"


def speak_up_on_errors(
    session: AgentSession[Any],
    phrases: Phrases,
    *,
    min_gap_s: float = 2.0,
    clock: Callable[[], float] | None = None,
) -> None:
    """When STT, LLM or TTS fails for a turn after its retries, say why in a sentence.

    Every failed turn gets its sentence (a turn left silent is what this prevents); one
    failure reported twice within ``min_gap_s`` (STT and LLM of the same turn) gets one. A
    streaming STT fails as a stream, not per turn (it reconnects every half second while its
    provider is down), so its sentence is said once each time the person has spoken.
    """
    loop_time = clock or asyncio.get_running_loop().time
    last_said = -min_gap_s
    spoke_since_stt_apology = False

    def on_user_state(event: UserStateChangedEvent) -> None:
        nonlocal spoke_since_stt_apology
        if event.new_state == "speaking":
            spoke_since_stt_apology = True

    def on_error(event: ErrorEvent) -> None:
        nonlocal last_said, spoke_since_stt_apology
        error = event.error
        key = _ERROR_PHRASE.get(getattr(error, "type", ""))
        if key is None or getattr(error, "recoverable", False):
            return
        now = loop_time()
        if now - last_said < min_gap_s:
            return
        if key == "stt":
            if not spoke_since_stt_apology:
                return  # nobody spoke into the broken stream: there is no turn to answer
            spoke_since_stt_apology = False
        last_said = now
        logger.warning("%s failed for this turn; telling the person", key.upper())
        with contextlib.suppress(RuntimeError):  # the session is closing
            phrases.say(session, key)

    session.on("error", on_error)
    session.on("user_state_changed", on_user_state)


def _write_wav(path: Path, frames: list[rtc.AudioFrame]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    first = frames[0]
    # a name of its own: job processes on a fresh machine render the same phrase at once,
    # and a shared temporary file would be written by two and renamed by one
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as file, wave.open(file, "wb") as out:
            out.setnchannels(first.num_channels)
            out.setsampwidth(2)
            out.setframerate(first.sample_rate)
            for frame in frames:
                out.writeframes(bytes(frame.data))
        partial.replace(path)  # atomic: another process reads the old file or the new one
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _read_wav(path: Path, frame_ms: int = 20) -> list[rtc.AudioFrame]:
    with wave.open(str(path), "rb") as source:
        rate, channels = source.getframerate(), source.getnchannels()
        pcm = source.readframes(source.getnframes())
    return pcm_frames(pcm, rate, channels, frame_ms)
