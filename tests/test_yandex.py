"""Yandex SpeechKit as a speech provider: its STT and TTS against a contract double of the
v1 REST API, with real espeak-ng speech through the VAD, on the pool's shared session;
errors mapped so failover works, breakers, and its connection limit under load."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from livekit import rtc
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.plugins import silero

from agent import Assistant
from pool import ConfigError, get_pool
from testbed.audio_io import CapturedAudio, SpeechInput, speak_to_frames
from testbed.openai_server import Fault, OpenAIServer, Rule, last_user_text
from testbed.threaded import Trouble
from testbed.waiting import wait_until
from testbed.yandex import YandexDouble
from tests.support.services import YANDEX_FOLDER, YANDEX_KEY
from tools.conversation import SessionData, build_session
from tools.pool_tools import stats_summary
from tools.providers import build_stt, build_tts, yandex_spec
from tools.settings import Provider, Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("espeak")]
KEY, FOLDER = YANDEX_KEY, YANDEX_FOLDER


def speechkit(double: YandexDouble, **extra: object) -> Provider:
    """As Settings builds it from a TTS_PROVIDERS entry of kind yandex."""
    fields: dict[str, object] = {
        "name": "yandex",
        "kind": "yandex",
        "api_key": KEY,
        "base_url": double.url,
        "folder_id": FOLDER,
        "priority": 30,
        "max_connections": 40,
    }
    fields.update(extra)
    return Provider(**fields)  # type: ignore[arg-type]


def openai_provider(server: OpenAIServer) -> Provider:
    return Provider(name="primary", base_url=server.base_url)


async def spoken_turn(
    settings: Settings, vad: silero.VAD, tmp_path: Path, done: object
) -> tuple[CapturedAudio, dict[str, object]]:
    pool = get_pool(settings)
    userdata = SessionData(pool=pool, settings=settings, user_id="voice-user")
    speech, captured = SpeechInput(), CapturedAudio()
    try:
        session = await build_session(pool, settings, userdata, vad)
        session.input.audio, session.output.audio = speech, captured
        async with session:
            await session.start(Assistant())
            speech.say(speak_to_frames("What is the weather like today?", tmp_path))
            await wait_until(lambda: done() and captured.seconds >= 0.25)  # type: ignore[operator]
            speech.close()
        stats = stats_summary(pool)["resources"]
    finally:
        await pool.aclose()
    return captured, stats


async def test_a_spoken_turn_is_heard_and_voiced_by_speechkit(
    settings: Settings, vad: silero.VAD, tmp_path: Path, server: OpenAIServer, yandex: YandexDouble
) -> None:
    yandex.transcripts.append("what is the weather like today")
    server.script(Rule(text="Sunny and warm.", when=lambda b: "weather" in last_user_text(b)))
    chain = (speechkit(yandex),)
    configured = replace(settings, stt_providers=chain, tts_providers=chain)

    captured, stats = await spoken_turn(configured, vad, tmp_path, lambda: yandex.texts)

    assert yandex.audio_bytes[0] > 16000  # the utterance, cut by the VAD, as 16 kHz LPCM
    assert (
        last_user_text(server.bodies("/chat/completions")[-1]) == "what is the weather like today"
    )
    assert yandex.texts[0] == "Sunny and warm."
    assert captured.seconds >= 0.25  # SpeechKit's PCM reached the output
    assert server.count("/audio/transcriptions") == server.count("/audio/speech") == 0
    entry = stats["yandex"]
    info = entry["info"]
    assert (info["kind"], info["priority"], info["max_connections"]) == ("yandex", 30, 40)
    assert stats["yandex.stt"]["health"] == "HEALTHY" and stats["yandex.tts"]["requests"] >= 1


async def test_the_chain_moves_from_openai_to_speechkit_and_back(
    settings: Settings, vad: silero.VAD, tmp_path: Path, server: OpenAIServer, yandex: YandexDouble
) -> None:
    """OpenAI answers 503 to speech: the same turn is voiced by SpeechKit."""
    server.script(
        Rule(path="/audio/speech", fault=Fault(status=503), times=None),
        Rule(text="Backup voice here.", when=lambda b: "weather" in last_user_text(b)),
    )
    server.transcripts.append("what is the weather like today")
    chain = (openai_provider(server), speechkit(yandex))
    configured = replace(settings, stt_providers=chain, tts_providers=chain)

    captured, stats = await spoken_turn(configured, vad, tmp_path, lambda: yandex.texts)

    assert server.count("/audio/speech") >= 1  # asked first, and failed
    assert yandex.texts == ["Backup voice here."]
    assert captured.seconds >= 0.25
    assert stats["primary"]["failures"] >= 1

    # the other way: SpeechKit down, OpenAI first in priority after all
    server.reset()
    yandex.fail("tts", Trouble(status=500))
    server.transcripts.append("what is the weather like today")
    server.script(Rule(text="Primary again.", when=lambda b: "weather" in last_user_text(b)))
    reordered = (speechkit(yandex, priority=5), openai_provider(server))
    configured = replace(settings, stt_providers=reordered[1:], tts_providers=reordered)
    texts_before = len(yandex.texts)
    captured, _ = await spoken_turn(
        configured, vad, tmp_path, lambda: server.count("/audio/speech") >= 1
    )
    assert yandex.requests["tts"] >= 1 and len(yandex.texts) == texts_before
    assert server.bodies("/audio/speech")[0]["input"] == "Primary again."


async def test_speechkit_errors_become_livekit_errors_and_open_its_breaker(
    settings: Settings, yandex: YandexDouble, vad: silero.VAD
) -> None:
    settings = replace(settings, tts_providers=(speechkit(yandex),))
    pool = get_pool(settings)
    try:
        voice = await build_tts(pool, settings)
        once = APIConnectOptions(max_retry=0, timeout=2.0)
        yandex.fail("tts", Trouble(status=401))
        with pytest.raises(APIStatusError) as refused:
            await voice.synthesize("hello", conn_options=once).collect()
        assert refused.value.status_code == 401 and not refused.value.retryable
        assert "UNAUTHORIZED" in str(refused.value) or "injected" in str(refused.value)
        assert KEY not in str(refused.value)

        yandex.fail("tts", Trouble(status=503))
        for _ in range(4):  # with the 401, five failures in a row: the breaker opens
            with pytest.raises(APIStatusError):
                await voice.synthesize("hello", conn_options=once).collect()
        asked = yandex.requests["tts"]
        # open: the next attempt fails at once, without a request
        with pytest.raises(Exception, match="circuit breaker is open"):
            await voice.synthesize("hello", conn_options=once).collect()
        assert yandex.requests["tts"] == asked
        assert pool.stats().resources["yandex.tts"].breaker == "open"
        # the STT capability has its own breaker, still closed
        await build_stt(pool, settings, vad)
        assert pool.meter("yandex.stt").breaker.state == "closed"
    finally:
        await pool.aclose()


async def test_a_slow_answer_fails_the_attempt_within_its_timeout(
    settings: Settings, yandex: YandexDouble, vad: silero.VAD
) -> None:
    settings = replace(settings, stt_providers=(speechkit(yandex),))
    pool = get_pool(settings)
    try:
        engine = await build_stt(pool, settings, vad)
        yandex.fail("stt", Trouble(delay_s=5.0))
        frame = rtc.AudioFrame(b"\0\0" * 16000, 16000, 1, 16000)
        with pytest.raises(Exception) as slow:
            await engine.recognize([frame], conn_options=APIConnectOptions(max_retry=0, timeout=1))
        assert type(slow.value).__name__ in {"APITimeoutError", "APIConnectionError"}
    finally:
        await pool.aclose()


async def test_fifty_concurrent_syntheses_stay_within_the_connection_limit(
    settings: Settings, yandex: YandexDouble
) -> None:
    limit = 8
    settings = replace(settings, tts_providers=(speechkit(yandex, max_connections=limit),))
    pool = get_pool(settings)
    try:
        voice = await build_tts(pool, settings)
        yandex.fail("tts", Trouble(delay_s=0.2))  # every answer takes a while
        frames = await asyncio.gather(*(voice.synthesize(f"n{i}").collect() for i in range(50)))
    finally:
        await pool.aclose()
    assert len(frames) == 50 and yandex.requests["tts"] == 50
    assert yandex.most_in_flight <= limit  # counted at the server
    assert yandex.connections <= limit


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "g", "kind": "watson"}, "kind must be one of openai, google, yandex"),
        ({"name": "y", "kind": "yandex"}, 'a yandex provider needs "api_key_env"'),
        ({"name": "y", "kind": "yandex", "api_key_env": "NOPE_KEY"}, "NOPE_KEY, which is not"),
        ({"name": "y", "priority": "first"}, "priority must be a whole number"),
    ],
)
def test_a_misconfigured_speech_provider_names_the_entry(
    entry: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        Settings.from_env({"TTS_PROVIDERS": json.dumps([entry])})
    assert f"TTS_PROVIDERS[0] ({entry['name']})" in str(error.value)


def test_providers_come_in_priority_order_with_limits_per_kind() -> None:
    env = {
        "YANDEX_KEY": "k",
        "STT_PROVIDERS": json.dumps(
            [
                {"name": "ya", "kind": "yandex", "api_key_env": "YANDEX_KEY"},
                {"name": "oa", "base_url": "http://127.0.0.1:9/v1"},
                {"name": "ob", "base_url": "http://127.0.0.1:9/v1", "priority": 10},
            ]
        ),
    }
    chain = Settings.from_env(env).stt_providers
    assert [(p.name, p.priority, p.max_connections) for p in chain] == [
        ("oa", 10, 50),
        ("ob", 10, 50),  # a tie keeps the list's order
        ("ya", 30, 40),
    ]
    with pytest.raises(ConfigError, match="kind must be one of openai"):
        Settings.from_env({**env, "LLM_PROVIDERS": env["STT_PROVIDERS"]})


async def test_the_client_shows_no_key_in_repr_or_in_logs_of_it(
    settings: Settings, yandex: YandexDouble
) -> None:
    provider = speechkit(yandex)
    pool = get_pool(settings)
    try:
        client = await pool.acquire(yandex_spec(pool, provider))
        assert KEY not in repr(client) and KEY not in str(client)
        assert FOLDER in repr(client)  # what it is for stays visible
    finally:
        await pool.aclose()
