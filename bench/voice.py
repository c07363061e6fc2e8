"""End of speech to the agent's first audio frame, with the pool and with fresh clients."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from livekit.agents import AgentSession
from livekit.plugins import openai as openai_plugin
from livekit.plugins import silero

from agent import Assistant, build_session
from pool import get_pool
from tests.support.audio_io import CapturedAudio, SpeechInput, speak_to_frames
from tools.session import SessionData

from .rig import Rig

UTTERANCE = "What is the weather like today?"


async def _turn(session: AgentSession[Any], rig: Rig, frames: list[Any]) -> float:
    speech, captured = SpeechInput(), CapturedAudio()
    session.input.audio = speech
    session.output.audio = captured
    rig.server.transcripts.append("what is the weather like today")
    async with session:
        await session.start(Assistant())
        speech.say(frames)
        for _ in range(600):
            if captured.first_frame_at and speech.speech_ended_at:
                break
            await asyncio.sleep(0.02)
        speech.close()
    if not captured.first_frame_at or speech.speech_ended_at is None:
        raise RuntimeError("the agent never answered the spoken turn")
    return captured.first_frame_at[0] - speech.speech_ended_at


async def voice_turn(rig: Rig, reps: int) -> dict[str, float]:
    vad = silero.VAD.load()
    frames = speak_to_frames(UTTERANCE, rig.workdir)
    settings = rig.settings

    async def with_pool() -> float:
        pool = get_pool(settings)
        try:
            await pool.warm()
            userdata = SessionData(pool=pool, settings=settings, user_id="bench")
            return await _turn(await build_session(pool, userdata, vad), rig, frames)
        finally:
            await pool.aclose()

    async def with_fresh_clients() -> float:
        # each plugin builds its own client, as livekit does when none is given
        options = {"base_url": settings.openai_base_url, "api_key": settings.openai_api_key}
        session: AgentSession[Any] = AgentSession(
            stt=openai_plugin.STT(model=settings.stt_model, use_realtime=False, **options),
            llm=openai_plugin.LLM(model=settings.llm_model, **options),
            tts=openai_plugin.TTS(model=settings.tts_model, voice=settings.tts_voice, **options),
            vad=vad,
            turn_handling={"turn_detection": "vad"},
        )
        return await _turn(session, rig, frames)

    pooled = [await with_pool() for _ in range(reps)]
    fresh = [await with_fresh_clients() for _ in range(reps)]
    with_ms = statistics.median(pooled) * 1000
    return {
        "eos_to_first_audio_ms": round(with_ms, 1),
        "with_pool_ms": round(with_ms, 1),
        "without_pool_ms": round(statistics.median(fresh) * 1000, 1),
    }
