"""End of speech to the agent's first audio frame, with the pool and with fresh clients,
through the latency proxy; the VAD's end-of-speech silence is reported apart from the
pipeline after it."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.utils import http_context
from livekit.plugins import openai as openai_plugin
from livekit.plugins import silero

from agent import Assistant
from pool import get_pool
from testbed.audio_io import CapturedAudio, SpeechInput, speak_to_frames
from tools.conversation import SessionData, build_session, turn_handling

from .rig import Rig

UTTERANCE = "What is the weather like today?"


async def _turn(session: AgentSession[Any], rig: Rig, frames: list[Any]) -> tuple[float, float]:
    """(end of the clip's speech → first audio frame, of which: → the VAD's end of speech)"""
    speech, captured = SpeechInput(), CapturedAudio()
    session.input.audio = speech
    session.output.audio = captured
    vad_ended: list[float] = []
    session.on(
        "user_state_changed",
        lambda ev: vad_ended.append(time.perf_counter()) if ev.old_state == "speaking" else None,
    )
    rig.server.transcripts.append("what is the weather like today")
    async with session:
        await session.start(Assistant())
        speech.say(frames)
        for _ in range(600):
            if captured.first_frame_at and speech.speech_ended_at:
                break
            await asyncio.sleep(0.02)
        speech.close()
    if not captured.first_frame_at or speech.speech_ended_at is None or not vad_ended:
        raise RuntimeError("the agent never answered the spoken turn")
    ended = speech.speech_ended_at
    return captured.first_frame_at[0] - ended, vad_ended[-1] - ended


async def voice_turn(rig: Rig, reps: int) -> dict[str, float]:
    vad = silero.VAD.load(min_silence_duration=rig.settings.vad_silence_s)
    frames = speak_to_frames(UTTERANCE, rig.workdir)
    settings = rig.settings

    async def with_pool() -> tuple[float, float]:
        pool = get_pool(settings)
        try:
            await pool.warm()
            userdata = SessionData(pool=pool, settings=settings, user_id="bench")
            return await _turn(await build_session(pool, settings, userdata, vad), rig, frames)
        finally:
            await pool.aclose()

    async def with_fresh_clients() -> tuple[float, float]:
        # each plugin builds its own client, as livekit does when none is given; the same
        # streaming STT and turn handling as the pooled session
        options = {"base_url": settings.openai_base_url, "api_key": settings.openai_api_key}
        async with http_context.open():
            session: AgentSession[Any] = AgentSession(
                stt=openai_plugin.STT(model=settings.stt_model, use_realtime=True, **options),
                llm=openai_plugin.LLM(model=settings.llm_model, **options),
                tts=openai_plugin.TTS(
                    model=settings.tts_model, voice=settings.tts_voice, **options
                ),
                vad=vad,
                turn_handling=turn_handling(settings),
            )
            return await _turn(session, rig, frames)

    pooled = [await with_pool() for _ in range(reps)]
    fresh = [await with_fresh_clients() for _ in range(reps)]

    def median_ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 1)

    return {
        "rtt_ms": rig.rtt_ms,
        "with_pool_ms": median_ms([total for total, _ in pooled]),
        "without_pool_ms": median_ms([total for total, _ in fresh]),
        # the same VAD in both: its end-of-speech silence, then the pipeline
        "vad_silence_ms": median_ms([vad for _, vad in pooled + fresh]),
        "pipeline_with_pool_ms": median_ms([total - vad for total, vad in pooled]),
        "pipeline_without_pool_ms": median_ms([total - vad for total, vad in fresh]),
    }
