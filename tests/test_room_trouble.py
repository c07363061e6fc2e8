"""The agent where its users meet it: a real LiveKit room on a local server, the worker
as a real process (`python agent.py start`), and people who join with the LiveKit SDK.

Here: never silent when a provider is slow or down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from livekit import api

from room.livekit_server import API_KEY, API_SECRET, LiveKitServer
from testbed.audio_io import speak_to_frames
from testbed.openai_server import (
    Fault,
    OpenAIServer,
    Rule,
    last_user_text,
)
from testbed.worker import Worker, room_env
from tests.support.rooms import (
    KEY,
    dispatched_room,
    greeted,
    phrases_rendered,
    room,
)
from tools.conversation import PHRASES
from tools.dispatch import dispatch_metadata

pytestmark = pytest.mark.slow


async def test_a_slow_model_is_waited_for_with_an_acknowledgement(
    livekit: LiveKitServer, server: OpenAIServer, tmp_path: Path
) -> None:
    # the only model takes 2.5 s to its first token, every time
    server.script(
        Rule(
            text="Here is my answer.",
            when=lambda b: last_user_text(b).startswith("question"),
            fault=Fault(delay_s=2.5),
            times=None,
        )
    )
    env = room_env(server.base_url, OPENAI_API_KEY=KEY)
    with Worker(livekit, tmp_path, **env) as worker:
        async with worker.person("sol", room()) as sol:
            await greeted(sol)
            await sol.until(lambda: phrases_rendered(tmp_path), 30, "the phrases")
            for n in range(3):
                server.transcripts.append(f"question {n}")
                ended = await sol.say_and_wait(speak_to_frames(f"Question {n}?", tmp_path))
                await sol.until(
                    lambda n=n: sol.said_by_agent().count("Here is my answer.") > n, 30, "answer"
                )
                # heard before the model's first token: the acknowledgement is a sound of its
                # own, with the model's 2.5 s of silence between it and the answer
                await sol.until(
                    lambda ended=ended: len([t for t in sol.heard.sound_starts if t > ended]) >= 2,
                    30,
                    "the acknowledgement, then the answer",
                )
                await asyncio.sleep(1.0)
    said = sol.said_by_agent()
    assert said.count("Here is my answer.") == 3  # every question answered
    assert said.count("One moment.") == 3  # and none waited in silence for it
    # speech was never refused: every question heard over the realtime WebSocket
    assert server.realtime_events["conversation.item.input_audio_transcription.completed"] >= 3
    assert "CircuitOpenError" not in worker.output()


async def test_a_provider_outage_is_explained_and_the_session_answers_after_it(
    livekit: LiveKitServer, tmp_path: Path
) -> None:
    provider = OpenAIServer().start()
    port = provider.port
    env = room_env(
        provider.base_url,
        OPENAI_API_KEY=KEY,
        # the health loop probes (and heals) during the outage, as it would in production
        HEALTH_TICK_S="0.5",
        HEALTH_PROBE_S="1",
    )
    try:
        with Worker(livekit, tmp_path, **env) as worker:
            async with worker.person("otto", room()) as otto:
                await greeted(otto)
                await otto.until(lambda: phrases_rendered(tmp_path), 30, "the phrases")
                provider.stop()

                ended = await otto.say_and_wait(speak_to_frames("Are you there?", tmp_path))
                await otto.until(lambda: otto.first_sound_after(ended), 15, "anything at all")
                heard = otto.first_sound_after(ended)
                assert heard is not None
                await otto.until(
                    lambda: any("trouble" in s for s in otto.said_by_agent()), 10, "why"
                )
                worker.wait_for("failed its health probe", 15)

                provider = OpenAIServer(port=port).start()  # the provider is back
                await asyncio.sleep(1.5)
                provider.transcripts.append("and now")
                ended = await otto.say_and_wait(speak_to_frames("And now?", tmp_path))
                await otto.until(lambda: "You said: and now" in otto.said_by_agent(), 30, "reply")
                assert otto.first_sound_after(ended) is not None
    finally:
        provider.stop()
    print(f"outage: first sound {heard - ended:.2f} s after the end of speech")


async def test_with_the_tts_down_the_prerendered_apology_is_heard(
    livekit: LiveKitServer, server: OpenAIServer, tmp_path: Path
) -> None:
    env = room_env(server.base_url, OPENAI_API_KEY=KEY)
    with Worker(livekit, tmp_path, **env) as worker:
        async with worker.person("tia", room()) as tia:
            await greeted(tia)
            await tia.until(lambda: phrases_rendered(tmp_path), 30, "the phrases")
            server.script(Rule(path="/audio/speech", fault=Fault(status=503), times=None))
            speech_requests = server.count("/audio/speech")
            server.transcripts.append("tell me a story")
            ended = await tia.say_and_wait(speak_to_frames("Tell me a story.", tmp_path))
            await tia.until(lambda: tia.first_sound_after(ended), 20, "the apology's audio")
            await tia.until(lambda: PHRASES["tts"] in tia.said_by_agent(), 10, "the apology's text")
    assert server.count("/audio/speech") > speech_requests  # the TTS really was asked, and failed
    assert tia.heard.peak_rms > 1000
    assert "TTS failed for this turn; telling the person" in worker.output()


async def test_a_phrase_the_tts_cannot_render_is_nobodys_failed_turn(
    livekit: LiveKitServer, server: OpenAIServer, tmp_path: Path
) -> None:
    """The trouble phrases render in the background, and their TTS may fail after the session
    has started: that is no turn of the person's, so nothing is said to the room for it."""
    # every synthesis fails, late enough to land after session.start
    server.script(Rule(path="/audio/speech", fault=Fault(status=401, delay_s=2.0), times=None))
    env = room_env(server.base_url, OPENAI_API_KEY=KEY, PARTICIPANT_WAIT_S="8")
    with Worker(livekit, tmp_path, **env) as worker:
        async with api.LiveKitAPI(livekit.http_url, API_KEY, API_SECRET) as lk:
            name = await dispatched_room(
                lk, worker, empty_timeout=30, metadata=dispatch_metadata("ada")
            )
            worker.wait_for("could not render", 30)
            worker.wait_for(f"never joined room {name}", 30)
    output = worker.output()
    assert "failed for this turn" not in output
    assert "Traceback" not in output
