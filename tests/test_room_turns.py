"""Turn-taking in a real room: the agent answers the moment the person has finished, and
never before. A real recognizer (pocketsphinx over the sentences spoken here) sits behind
the local server's realtime transcription, so a sentence cut by a pause is heard as a
fragment, as it would be from a person.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit import api

from room.livekit_server import API_KEY, API_SECRET, LiveKitServer
from room.ready_room import ReadyRoom
from room.rooms import RoomConfig
from testbed.audio_io import FRAME_MS, silence, speak_to_frames
from testbed.openai_server import OpenAIServer, Rule, has_tool_result, last_user_text, system_text
from testbed.person import Person, token
from testbed.recognizer import Recognizer
from testbed.waiting import wait_until
from testbed.worker import Worker, room_env
from tests.support.rooms import KEY, greeted, heard_greeting_out, room
from tools.memory.stores.sqlite import SCHEMA

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("espeak")]

FRAGMENT = "I would like to book a table for"
REST = "two people tonight"
QUESTION = "What is the weather like today"
ALARM, WHEN = "Set an alarm", "for seven tomorrow morning"
CORPUS = (FRAGMENT, REST, f"{FRAGMENT} {REST}", QUESTION, "yes")


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(CORPUS).warm()


@pytest.fixture(scope="module")
def turn_worker(
    livekit: LiveKitServer, openai_server: OpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    workdir = tmp_path_factory.mktemp("turns")
    # DEBUG: livekit logs each end-of-turn decision with the wait it chose
    env = room_env(openai_server.base_url, OPENAI_API_KEY=KEY, LOG_LEVEL="DEBUG")
    with Worker(livekit, workdir, **env) as worker:
        yield worker


@pytest.fixture
def heard(server: OpenAIServer, recognizer: Recognizer) -> OpenAIServer:
    server.recognizer = recognizer
    return server


def spoken(*parts: str | float, workdir: Path) -> list:  # type: ignore[type-arg]
    """Speech with pauses: sentences and seconds of silence, in order."""
    frames = []
    for part in parts:
        if isinstance(part, str):
            frames += speak_to_frames(part, workdir)
        else:
            frames += [silence() for _ in range(round(part * 1000 / FRAME_MS))]
    return frames


def seconds(frames: list) -> float:  # type: ignore[type-arg]
    return len(frames) * FRAME_MS / 1000


def replies_to(server: OpenAIServer) -> list[str]:
    """The user turns the conversation's model was asked to answer (not post-turn learning)."""
    return [
        last_user_text(body)
        for body in server.bodies("/chat/completions")
        if "remembers the people you talk to" in system_text(body)
    ]


def end_of_turn_waits(worker: Worker, room_name: str) -> list[float]:
    """The endpointing delay livekit chose for each end of a turn in ``room_name``."""
    waits = []
    for line in worker.output().splitlines():
        if line.startswith("{") and '"eot prediction"' in line:
            record = json.loads(line)
            if record.get("room") == room_name:
                waits.append(float(record["endpointing_delay"]))
    return waits


async def test_a_paused_sentence_is_answered_once_as_the_whole_sentence(
    turn_worker: Worker, heard: OpenAIServer, tmp_path: Path
) -> None:
    heard.script(Rule(text="A table for two, tonight.", when=lambda b: REST in last_user_text(b)))
    first = spoken(FRAGMENT, workdir=tmp_path)
    speech = first + spoken(0.8, REST, workdir=tmp_path)
    name = room()
    async with turn_worker.person("pat", name) as pat:
        await greeted(pat)
        ended = await pat.say_and_wait(speech)
        fragment_ended = ended - seconds(speech) + seconds(first)
        await pat.until(lambda: "A table for two, tonight." in pat.said_by_agent(), 30, "reply")

    # nothing was said in the pause: the first sound came after the whole sentence
    first_sound = pat.first_sound_after(fragment_ended)
    assert first_sound is not None and first_sound > ended
    assert pat.said_by_agent()[1:] == ["A table for two, tonight."]
    assert replies_to(heard)[-1] == f"{FRAGMENT} {REST}".lower()
    # the fragment was held for the maximum, the whole sentence committed after the minimum
    waits = end_of_turn_waits(turn_worker, name)
    assert 2.0 in waits and waits[-1] == 0.25, waits


async def test_a_question_and_a_short_answer_are_committed_without_the_maximum_wait(
    turn_worker: Worker, heard: OpenAIServer, tmp_path: Path
) -> None:
    heard.script(
        Rule(text="Sunny all day.", when=lambda b: "weather" in last_user_text(b)),
        Rule(text="Good, then enjoy it.", when=lambda b: last_user_text(b) == "yes"),
    )
    name = room()
    async with turn_worker.person("quin", name) as quin:
        await greeted(quin)
        await quin.say_and_wait(spoken(QUESTION, workdir=tmp_path))
        await quin.until(lambda: "Sunny all day." in quin.said_by_agent(), 30, "the answer")
        await quin.say_and_wait(spoken("yes", workdir=tmp_path))
        await quin.until(lambda: "Good, then enjoy it." in quin.said_by_agent(), 30, "reply")

    waits = end_of_turn_waits(turn_worker, name)
    assert waits and set(waits) == {0.25}, waits
    # heard over the realtime WebSocket, with the words arriving while they were spoken
    events = heard.realtime_events
    assert events["session.update"] >= 1
    assert events["conversation.item.input_audio_transcription.delta"] >= 3
    assert heard.count("/audio/transcriptions") == 0
    # one model call per turn: the reply begun before the turn was committed was the one used
    # (the words are the test recognizer's: under a loaded machine it once gave the question
    # without its last word, which the agent answered as it should, once)
    question, answer = replies_to(heard)
    assert question in QUESTION.lower() and "weather" in question and answer == "yes"
    log = turn_worker.output()
    assert log.count("using preemptive generation") >= 2
    assert "preemptive generation invalidated" not in log


def preemptive_outcomes(worker: Worker, room_name: str) -> list[str]:
    """Per reply livekit began before the turn's commit, in ``room_name``: "kept" (it was
    the reply) or "discarded" (the committed turn differed, and it was generated again)."""
    outcomes = []
    for line in worker.output().splitlines():
        if not line.startswith("{") or "preemptive generation" not in line:
            continue
        record = json.loads(line)
        if record.get("room") != room_name:
            continue
        if record["message"] == "using preemptive generation":
            outcomes.append("kept")
        elif record["message"].startswith("preemptive generation invalidated"):
            outcomes.append("discarded")
    return outcomes


async def test_going_on_after_the_agent_began_gets_one_answer_to_the_whole_sentence(
    turn_worker: Worker, server: OpenAIServer, tmp_path: Path
) -> None:
    """ "Set an alarm" can end where the person pauses: the agent begins, the person goes on
    ("for seven tomorrow morning"), the reply is cut, and one answer follows for the whole.
    The two parts are transcribed as scripted: what is tested is the join, not the hearing."""
    heard = server
    heard.transcripts += [ALARM.lower(), WHEN]
    heard.speech_s_per_char = 0.06  # a voice's pace: the person can talk over the reply
    heard.script(
        Rule(
            text="Sure, what time would you like the alarm to ring, and on which day?",
            when=lambda b: last_user_text(b) == ALARM.lower(),
            times=None,
        ),
        Rule(text="Your alarm is set for seven.", when=lambda b: "seven" in last_user_text(b)),
    )
    name = room()
    async with turn_worker.person("lou", name) as lou:
        await greeted(lou)
        # livekit ignores interruptions while its echo canceller warms up (3 s of speech)
        await asyncio.sleep(3.5)
        start = time.perf_counter()
        lou.say(spoken(ALARM, 1.5, WHEN, workdir=tmp_path))
        await lou.until(lambda: lou.first_sound_after(start + 0.5), 30, "the agent begin")
        await lou.until(lambda: "Your alarm is set for seven." in lou.said_by_agent(), 30, "reply")

    final = next(
        body
        for body in reversed(heard.bodies("/chat/completions"))
        if "seven" in last_user_text(body)
        and "remembers the people you talk to" in system_text(body)
    )
    said = [m.get("content") for m in final["messages"] if m["role"] == "user"]
    seen = [(m["role"], m.get("content")) for m in final["messages"] if m["role"] != "system"]
    assert said[-1] == f"{ALARM} {WHEN}".lower(), seen
    assert ALARM.lower() not in said[:-1]  # one user turn, not a fragment and a rest
    assert not any("what time would" in str(m.get("content")) for m in final["messages"])
    # the answer to the whole was begun as the person finished, and kept: the reply to the
    # fragment, once cut, no longer holds back the reply to the whole sentence
    assert preemptive_outcomes(turn_worker, name) == ["kept", "kept"]

    # post-turn learning read the exchange as the model did: one sentence, one answer
    def learned_from() -> list[dict]:  # type: ignore[type-arg]
        return [
            json.loads(last_user_text(body))
            for body in heard.bodies("/chat/completions")
            if "Extract facts" in system_text(body) and WHEN in last_user_text(body)
        ]

    await wait_until(learned_from, 30, what="the exchange learned from")
    assert [e["user"] for e in learned_from()] == [f"{ALARM} {WHEN}".lower()]
    assert not any(
        "Extract facts" in system_text(body) and "what time would" in last_user_text(body)
        for body in heard.bodies("/chat/completions")
    )  # the cut reply was no exchange of its own


async def test_a_returning_persons_greeting_plays_from_audio_and_is_rebuilt_when_they_change(
    turn_worker: Worker, heard: OpenAIServer
) -> None:
    with sqlite3.connect(turn_worker.workdir / "memory.db") as db:
        db.executescript(SCHEMA)
        db.execute(
            "INSERT OR REPLACE INTO memories VALUES ('ada', 'FACT', 'name', 'Ada', ?, ?)",
            (time.time(), time.time()),
        )
    heard.script(
        Rule(text="Welcome back, Ada.", when=lambda b: "returning user" in system_text(b)),
    )

    def greetings_spoken(text: str) -> int:
        return sum(1 for body in heard.bodies("/audio/speech") if body.get("input") == text)

    async def visit() -> Person:
        async with turn_worker.person("ada", room()) as ada:
            await heard_greeting_out(ada)
        return ada

    async def visit_unnamed() -> Person:
        """Dispatched without naming anyone: the job learns who it is for when they join."""
        name = room()
        unnamed = token("ada", name, agent=turn_worker.agent_name, named=None)
        async with Person(turn_worker.livekit.url, "ada", name, access_token=unnamed) as ada:
            await heard_greeting_out(ada)
        return ada

    async def visit_from_the_page() -> Person:
        """The page gives out a room it keeps ready: the agent is in it before Ada asks,
        and loads her greeting's audio when the page names her."""
        lk_server = turn_worker.livekit
        config = RoomConfig(lk_server.url, API_KEY, API_SECRET, agent_name=turn_worker.agent_name)
        async with api.LiveKitAPI(lk_server.http_url, API_KEY, API_SECRET) as lk:
            page = ReadyRoom(config, lk)
            page.start()
            try:
                assert await page.wait_ready(30), "no room was readied"
                given = await page.take("ada")
                async with Person(
                    given["url"], "ada", given["room"], access_token=given["token"]
                ) as ada:
                    await heard_greeting_out(ada)
            finally:
                await page.aclose()
        return ada

    first = await visit()
    assert first.said_by_agent()[0] == "Welcome back, Ada."
    # said through the TTS, and rendered once more for the next visit
    await first.until(lambda: greetings_spoken("Welcome back, Ada.") == 2, 20, "the render")

    second = await visit()
    assert second.said_by_agent()[0] == "Welcome back, Ada."
    assert second.heard.sound_s >= 0.8 * first.heard.sound_s and second.heard.peak_rms > 1000
    assert greetings_spoken("Welcome back, Ada.") == 2  # no TTS call this time
    unnamed = await visit_unnamed()
    assert unnamed.said_by_agent()[0] == "Welcome back, Ada."
    assert unnamed.heard.peak_rms > 1000
    assert greetings_spoken("Welcome back, Ada.") == 2
    early = await visit_from_the_page()
    assert early.said_by_agent()[0] == "Welcome back, Ada."
    # none of it played before Ada could hear it
    assert early.heard.sound_s >= 0.8 * second.heard.sound_s and early.heard.peak_rms > 1000
    assert greetings_spoken("Welcome back, Ada.") == 2

    # what the greeting is built from changes: text and audio are rebuilt
    heard.script(
        Rule(
            tool_calls=[("saveMemory", {"category": "FACT", "key": "name", "value": "Ada L"})],
            when=lambda b: "call me" in last_user_text(b) and not has_tool_result(b),
        ),
        Rule(text="Hello again, Ada L.", when=lambda b: "returning user" in system_text(b)),
    )
    heard.recognizer = None
    heard.transcripts.append("call me ada l")
    async with turn_worker.person("ada", room()) as ada:
        await greeted(ada)
        await ada.say_and_wait(speak_to_frames("Call me Ada L.", turn_worker.workdir))
        await ada.until(lambda: len(ada.said_by_agent()) >= 2, 30, "the reply")
    third = await visit()
    assert third.said_by_agent()[0] == "Hello again, Ada L."
    assert greetings_spoken("Hello again, Ada L.") >= 1


async def test_turn_detection_by_silence_alone_still_answers(
    livekit: LiveKitServer, heard: OpenAIServer, tmp_path: Path
) -> None:
    heard.script(Rule(text="Sunny all day.", when=lambda b: "weather" in last_user_text(b)))
    env = room_env(heard.base_url, OPENAI_API_KEY=KEY, TURN_DETECTION="vad", LOG_LEVEL="DEBUG")
    with Worker(livekit, tmp_path, **env) as worker:
        name = room()
        async with worker.person("val", name) as val:
            await greeted(val)
            await val.say_and_wait(spoken(QUESTION, workdir=tmp_path))
            await val.until(lambda: "Sunny all day." in val.said_by_agent(), 30, "the answer")
        assert end_of_turn_waits(worker, name) == []  # no detector: silence decided
