"""The voice path with real speech: espeak-ng audio → Silero VAD → OpenAI STT plugin →
LLM → OpenAI TTS plugin → audio frames out, all against the local server."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from livekit.plugins import silero

from agent import Assistant
from pool import ConnectionPool, get_pool
from testbed.audio_io import CapturedAudio, SpeechInput, speak_to_frames
from testbed.openai_server import (
    Fault,
    OpenAIServer,
    Rule,
    has_tool_result,
    last_user_text,
)
from testbed.waiting import wait_until
from tests.support.services import settings_of
from tools.conversation import SessionData, build_session
from tools.settings import Provider, Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("espeak")]


async def voice_turn(
    pool: ConnectionPool, vad: silero.VAD, tmp_path: Path, server: OpenAIServer, transcript: str
) -> tuple[CapturedAudio, SpeechInput]:
    """One spoken turn; ``server`` is the one that transcribes and speaks."""
    server.transcripts.append(transcript)
    settings = settings_of(pool)
    userdata = SessionData(pool=pool, settings=settings, user_id="voice-user")
    speech, captured = SpeechInput(), CapturedAudio()
    session = await build_session(pool, settings, userdata, vad)
    session.input.audio = speech
    session.output.audio = captured
    async with session:
        await session.start(Assistant())
        speech.say(speak_to_frames("How are your connections doing today?", tmp_path))
        await wait_until(lambda: captured.frames and server.count("/audio/speech") >= 1)
        await wait_until(lambda: captured.seconds >= 0.25)
        speech.close()
    return captured, speech


async def test_spoken_question_reaches_the_llm_and_audio_comes_back(
    pool: ConnectionPool, vad: silero.VAD, tmp_path: Path, server: OpenAIServer
) -> None:
    server.script(Rule(text="Everything is fine.", when=lambda b: "weather" in last_user_text(b)))

    captured, speech = await voice_turn(pool, vad, tmp_path, server, "what's the weather like")

    # heard over the realtime WebSocket, as it was spoken, not uploaded after it
    events = server.realtime_events
    assert server.count("/realtime") == 1 and events["session.update"] == 1
    assert events["input_audio_buffer.append"] > 20  # 50 ms chunks of the utterance
    assert events["conversation.item.input_audio_transcription.completed"] >= 1
    assert server.count("/audio/transcriptions") == 0
    chat = server.bodies("/chat/completions")[-1]
    assert last_user_text(chat) == "what's the weather like"
    assert server.bodies("/audio/speech")[0]["input"] == "Everything is fine."
    assert captured.seconds >= 0.25  # the TTS audio, decoded, reached the output
    assert speech.speech_ended_at is not None
    assert captured.first_frame_at[0] > speech.speech_ended_at


async def test_a_tool_call_by_voice(
    pool: ConnectionPool, vad: silero.VAD, tmp_path: Path, server: OpenAIServer
) -> None:
    server.script(
        Rule(
            tool_calls=[("getConnectionPoolStats", {})],
            when=lambda b: "connections" in last_user_text(b) and not has_tool_result(b),
        ),
        Rule(text="All my connections are healthy.", when=has_tool_result),
    )

    captured, _ = await voice_turn(pool, vad, tmp_path, server, "how are your connections doing")

    tool_output = [
        m for m in server.bodies("/chat/completions")[-1]["messages"] if m["role"] == "tool"
    ]
    assert '"health":"HEALTHY"' in tool_output[0]["content"]
    assert server.bodies("/audio/speech")[-1]["input"] == "All my connections are healthy."
    assert captured.seconds >= 0.25


async def test_a_non_streaming_stt_still_hears_the_whole_utterance(
    settings: Settings, vad: silero.VAD, tmp_path: Path, server: OpenAIServer
) -> None:
    server.script(Rule(text="Everything is fine.", when=lambda b: "weather" in last_user_text(b)))
    pool = get_pool(replace(settings, stt_streaming=False))
    try:
        captured, _ = await voice_turn(pool, vad, tmp_path, server, "what's the weather like")
    finally:
        await pool.aclose()

    transcription = server.bodies("/audio/transcriptions")[0]
    assert transcription["audio_bytes"] > 16000  # the utterance itself, cut by the VAD
    assert server.count("/realtime") == 0
    assert last_user_text(server.bodies("/chat/completions")[-1]) == "what's the weather like"
    assert captured.seconds >= 0.25


async def test_stt_and_tts_fail_over_to_the_next_provider(
    settings: Settings, vad: silero.VAD, tmp_path: Path, server: OpenAIServer
) -> None:
    """The streaming STT refused (its WebSocket answers 500): a non-streaming one hears."""
    with OpenAIServer() as backup:
        chain = (
            Provider(name="primary", base_url=server.base_url),
            Provider(name="backup", base_url=backup.base_url, streaming=False),
        )
        server.script(
            Rule(path="/realtime", fault=Fault(status=500), times=None),
            Rule(path="/audio/speech", fault=Fault(status=503), times=None),
            Rule(text="The backup heard you.", when=lambda b: "weather" in last_user_text(b)),
        )
        backup.transcripts.append("what's the weather like")
        settings = replace(settings, stt_providers=chain, tts_providers=chain)
        pool = get_pool(settings)
        userdata = SessionData(pool=pool, settings=settings, user_id="voice-user")
        speech, captured = SpeechInput(), CapturedAudio()
        utterance = speak_to_frames("What is the weather like today?", tmp_path)
        try:
            session = await build_session(pool, settings, userdata, vad)
            session.input.audio, session.output.audio = speech, captured
            async with session:
                await session.start(Assistant())
                speech.say(utterance)
                # livekit's STT FallbackAdapter switches providers but does not replay the
                # failed utterance to the next one: the user has to say it again
                await wait_until(lambda: pool.stats().resources["primary"].counts.failures >= 1)
                await wait_until(lambda: session.user_state != "speaking")
                speech.say(utterance)
                await wait_until(lambda: captured.seconds >= 0.25)
                speech.close()
            stats = pool.stats().resources
        finally:
            await pool.aclose()

        assert backup.count("/audio/transcriptions") >= 1
        assert backup.bodies("/audio/speech")[0]["input"] == "The backup heard you."
        assert server.count("/audio/speech") >= 1  # the primary was asked first, and failed
        assert stats["primary"].counts.failures >= 2
        assert stats["backup"].health == "HEALTHY"
