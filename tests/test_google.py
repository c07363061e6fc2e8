"""Google Cloud speech through the official livekit-plugins-google, its unmodified gRPC
clients pointed by the pool at a local server that speaks Google's real protocol; with
espeak-ng speech through the VAD, and failover across OpenAI, Google and Yandex."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.plugins import silero

from pool import ConfigError, get_pool, redact
from room.livekit_server import LiveKitServer
from testbed.audio_io import speak_to_frames
from testbed.google import GoogleDouble
from testbed.openai_server import Fault, OpenAIServer, Rule, last_user_text
from testbed.threaded import Trouble
from testbed.worker import Worker, room_env
from testbed.yandex import YandexDouble
from tests.test_yandex import FOLDER, KEY, speechkit, spoken_turn
from tools.providers import build_tts, import_plugin
from tools.settings import Provider, Settings

import_plugin()  # livekit registers plugins on the main thread, where pytest imports this
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("espeak")]


def cloud(double: GoogleDouble, **extra: object) -> Provider:
    fields: dict[str, object] = {
        "name": "google",
        "kind": "google",
        "base_url": double.url,
        "priority": 20,
        "max_connections": 100,
    }
    fields.update(extra)
    return Provider(**fields)  # type: ignore[arg-type]


async def test_a_spoken_turn_is_heard_and_voiced_by_google(
    settings: Settings, vad: silero.VAD, tmp_path: Path, server: OpenAIServer, google: GoogleDouble
) -> None:
    google.transcripts.append("what is the weather like today")
    server.script(Rule(text="Clear skies.", when=lambda b: "weather" in last_user_text(b)))
    chain = (cloud(google),)
    configured = replace(settings, stt_providers=chain, tts_providers=chain)

    captured, stats = await spoken_turn(configured, vad, tmp_path, lambda: google.texts)

    assert google.audio_bytes[0] > 16000  # the utterance, cut by the VAD, as LINEAR16
    assert (
        last_user_text(server.bodies("/chat/completions")[-1]) == "what is the weather like today"
    )
    assert google.texts == ["Clear skies."]
    assert captured.seconds >= 0.25
    assert server.count("/audio/transcriptions") == server.count("/audio/speech") == 0
    entry = stats["google"]
    info = entry["info"]
    assert (info["kind"], info["priority"], info["max_connections"]) == ("google", 20, 100)
    assert stats["google.stt"]["requests"] == 1 and stats["google.tts"]["health"] == "HEALTHY"


async def test_openai_then_google_then_yandex(
    settings: Settings,
    vad: silero.VAD,
    tmp_path: Path,
    server: OpenAIServer,
    google: GoogleDouble,
    yandex: YandexDouble,
) -> None:
    """OpenAI's speech refuses (503), Google's is unavailable: SpeechKit voices the turn."""
    server.script(
        Rule(path="/audio/speech", fault=Fault(status=503), times=None),
        Rule(text="Third time lucky.", when=lambda b: "weather" in last_user_text(b)),
    )
    google.fail("tts", Trouble(status=grpc.StatusCode.UNAVAILABLE))
    google.transcripts.append("what is the weather like today")
    stt_chain = (cloud(google),)
    tts_chain = (
        Provider(name="primary", base_url=server.base_url),
        cloud(google),
        speechkit(yandex),
    )
    configured = replace(settings, stt_providers=stt_chain, tts_providers=tts_chain)

    captured, stats = await spoken_turn(configured, vad, tmp_path, lambda: yandex.texts)

    assert server.count("/audio/speech") >= 1 and google.requests["tts"] >= 1
    assert yandex.texts == ["Third time lucky."]
    assert captured.seconds >= 0.25
    assert stats["google.tts"]["failures"] >= 1 and stats["yandex.tts"]["failures"] == 0


async def test_google_errors_are_livekit_errors_and_an_open_breaker_sends_nothing(
    settings: Settings, google: GoogleDouble
) -> None:
    settings = replace(settings, tts_providers=(cloud(google),))
    pool = get_pool(settings)
    once = APIConnectOptions(max_retry=0, timeout=2.0)
    try:
        voice = await build_tts(pool, settings)
        google.fail("tts", Trouble(status=grpc.StatusCode.PERMISSION_DENIED))
        with pytest.raises(APIStatusError) as refused:
            await voice.synthesize("hello", conn_options=once).collect()
        assert refused.value.status_code == 403 and not refused.value.retryable
        google.fail("tts", Trouble(status=grpc.StatusCode.UNAVAILABLE))
        for _ in range(4):
            with pytest.raises(APIStatusError):
                await voice.synthesize("hello", conn_options=once).collect()
        asked = google.requests["tts"]
        with pytest.raises(APIStatusError) as skipped:
            await voice.synthesize("hello", conn_options=once).collect()
        assert "circuit breaker is open" in str(skipped.value)
        assert google.requests["tts"] == asked  # no request while open
        google.heal()
    finally:
        await pool.aclose()


@pytest.mark.parametrize(
    ("entry", "env", "message"),
    [
        ({"name": "g", "kind": "google", "credentials_env": "GCP_SA"}, {}, "GCP_SA, which is not"),
        ({"name": "o", "credentials_env": "GCP_SA"}, {"GCP_SA": "{}"}, "is for kind google"),
    ],
)
def test_a_misconfigured_google_provider_names_the_entry(
    entry: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        Settings.from_env({**env, "STT_PROVIDERS": json.dumps([entry])})
    assert f"STT_PROVIDERS[0] ({entry['name']})" in str(error.value)


@pytest.mark.parametrize("model", ["chirp_2", "chirp_3", "telephony"])
def test_a_speech_to_text_v2_model_stops_the_start(model: str) -> None:
    entry = {"name": "g", "kind": "google", "model": model}
    with pytest.raises(ConfigError, match=f"STT_PROVIDERS \\(g\\): {model} is a Speech-to-Text v2"):
        Settings.from_env({"STT_PROVIDERS": json.dumps([entry])})
    # the same model is ordinary for a voice, which has no v2 here
    assert Settings.from_env({"TTS_PROVIDERS": json.dumps([entry])}).tts_providers


def test_the_registry_order_and_limits_of_all_three_kinds() -> None:
    env = {
        "YANDEX_KEY": "k",
        "TTS_PROVIDERS": json.dumps(
            [
                {"name": "ya", "kind": "yandex", "api_key_env": "YANDEX_KEY"},
                {"name": "gc", "kind": "google"},
                {"name": "oa", "base_url": "http://127.0.0.1:9/v1"},
            ]
        ),
    }
    chain = Settings.from_env(env).tts_providers
    assert [(p.name, p.priority, p.max_connections) for p in chain] == [
        ("oa", 10, 50),
        ("gc", 20, 100),
        ("ya", 30, 40),
    ]


def service_account() -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "voice-agent-test",
        "private_key_id": "k1-4d2f9a0c",
        "private_key": pem,
        "client_email": "agent@voice-agent-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def google_entry(value: str) -> dict[str, str]:
    entry = {"name": "g", "kind": "google", "credentials_env": "GCP_SA"}
    return {"GCP_SA": value, "STT_PROVIDERS": json.dumps([entry])}


def test_service_account_credentials_come_from_json_base64_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.providers.google import _credentials

    account = service_account()
    text = json.dumps(account)
    path = tmp_path / "account.json"
    path.write_text("\ufeff" + text, encoding="utf-8")
    for value in (
        text,
        "\ufeff" + text,  # saved by an editor that writes a byte-order mark
        base64.b64encode(text.encode()).decode(),  # as CI secrets are often stored
        str(path),
    ):
        (provider,) = Settings.from_env(google_entry(value)).stt_providers
        assert account["private_key"] not in repr(provider)
        credentials, project = _credentials(provider)
        assert project == "voice-agent-test"
        assert credentials.service_account_email == account["client_email"]
        # whatever form it came in, it is masked wherever it shows up
        assert value.strip() not in redact(f"could not open {value.strip()}")
        assert account["private_key"].splitlines()[1] not in redact(account["private_key"])
    # a provider built in code reads its variable when the client opens
    monkeypatch.setenv("GCP_SA", text)
    assert _credentials(Provider(name="g", kind="google", credentials_env="GCP_SA"))[1]


@pytest.mark.parametrize(
    "value",
    [
        "bm90IGpzb24gYXQgYWxs",  # base64 of "not json at all"
        "/no/such/dir/" + "c2VjcmV0LWtleS1tYXRlcmlhbA" * 20,  # too long for a file name
        '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----abc"}',
        '{"type": "service_account", truncated',
    ],
)
def test_credentials_that_are_not_a_service_account_stop_the_start_without_showing_them(
    value: str,
) -> None:
    with pytest.raises(ConfigError, match="GCP_SA") as error:
        Settings.from_env(google_entry(value))
    assert value not in str(error.value)
    assert "PRIVATE KEY" not in str(error.value) and "c2VjcmV0" not in str(error.value)


async def test_a_voice_that_stalls_hands_the_sentence_to_the_next_within_its_deadline(
    settings: Settings, vad: silero.VAD, tmp_path: Path, server: OpenAIServer, google: GoogleDouble
) -> None:
    """OpenAI's speech accepts the request and sends nothing: after the first-audio deadline
    the same sentence is voiced by Google, long before the read timeout."""
    server.script(
        Rule(path="/audio/speech", fault=Fault(delay_s=20), times=None),
        Rule(text="Quick handover.", when=lambda b: "weather" in last_user_text(b)),
    )
    google.transcripts.append("what is the weather like today")
    chain = (Provider(name="primary", base_url=server.base_url), cloud(google))
    configured = replace(
        settings,
        stt_providers=(cloud(google),),
        tts_providers=chain,
        tts_first_audio_deadline_s=1.0,
    )
    captured, stats = await spoken_turn(configured, vad, tmp_path, lambda: google.texts)

    assert google.texts == ["Quick handover."]
    assert captured.seconds >= 0.25
    assert "sent no audio within 1.0 s" in (stats["primary.tts"]["last_error"] or "")


async def test_an_openai_voice_keeps_to_its_connection_limit_under_50_requests(
    settings: Settings, server: OpenAIServer
) -> None:
    server.script(Rule(path="/audio/speech", fault=Fault(delay_s=0.2), times=None))
    limited = Provider(name="primary", base_url=server.base_url, max_connections=5)
    settings = replace(settings, tts_providers=(limited,))
    pool = get_pool(settings)
    try:
        voice = await build_tts(pool, settings)
        before = server.connections
        results = await asyncio.gather(*(voice.synthesize(f"n{i}").collect() for i in range(50)))
    finally:
        await pool.aclose()
    assert len(results) == 50 and server.count("/audio/speech") == 50
    assert server.connections - before <= 5  # counted at the server


async def test_in_a_room_google_hears_and_yandex_speaks_when_google_cannot(
    livekit: LiveKitServer,
    server: OpenAIServer,
    google: GoogleDouble,
    yandex: YandexDouble,
    tmp_path: Path,
) -> None:
    """The worker as a process in a real LiveKit room: its job processes load the Google
    plugin on their main thread, Google transcribes the person, Google's voice is
    unavailable, and the person hears SpeechKit."""
    google.fail("tts", Trouble(status=grpc.StatusCode.UNAVAILABLE))
    google.transcripts.append("what is the weather like today")
    server.script(Rule(text="Heard by Google.", when=lambda b: "weather" in last_user_text(b)))
    speechkit_entry = {
        "name": "yandex",
        "kind": "yandex",
        "base_url": yandex.url,
        "api_key_env": "YANDEX_KEY",
        "folder_id": FOLDER,
    }
    google_entry = {"name": "google", "kind": "google", "base_url": google.url}
    env = room_env(
        server.base_url,
        OPENAI_API_KEY="sk-room",
        YANDEX_KEY=KEY,
        STT_PROVIDERS=json.dumps([google_entry]),
        TTS_PROVIDERS=json.dumps([google_entry, speechkit_entry]),
    )
    with Worker(livekit, tmp_path, **env) as worker:
        async with worker.person("gina", f"room-{uuid.uuid4().hex[:8]}") as gina:
            await gina.until(lambda: gina.heard.sound_starts, 30, "the greeting")
            ended = await gina.say_and_wait(
                speak_to_frames("What is the weather like today?", tmp_path)
            )
            await gina.until(lambda: gina.first_sound_after(ended), 30, "the reply")
            await gina.until(
                lambda: "Heard by Google." in gina.said_by_agent(), 30, "the reply's text"
            )
        output = worker.output()

    assert google.requests["stt"] >= 1 and google.audio_bytes[0] > 16000
    assert google.requests["tts"] >= 1  # asked first, and unavailable
    assert "Heard by Google." in yandex.texts
    assert gina.heard.peak_rms > 1000  # SpeechKit's audio reached the person
    assert "Traceback" not in output
