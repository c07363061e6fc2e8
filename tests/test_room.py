"""The agent where its users meet it: a real LiveKit room on a local server, the worker
as a real process (`python agent.py start`), and people who join with the LiveKit SDK,
speak espeak-ng sentences into a microphone track and listen to the agent's audio."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit import api

from room.livekit_server import API_KEY, API_SECRET, LiveKitServer
from tests.support.audio_io import speak_to_frames
from tests.support.openai_server import (
    Fault,
    OpenAIServer,
    Rule,
    has_tool_result,
    last_user_text,
    system_text,
)
from tests.support.person import Person
from tests.support.worker import Worker, room_env
from tools.greeting import GENERIC_GREETING
from tools.phrases import PHRASES

pytestmark = pytest.mark.slow

KEY = "marker-provider-key-Qx7Zr2"  # not sk-shaped: only the pool's own redaction hides it


def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


def job_lines(worker: Worker, room_name: str) -> list[dict[str, object]]:
    lines = []
    for line in worker.output().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("room") == room_name:
                lines.append(record)
    return lines


def job_pids(worker: Worker, room_name: str) -> set[object]:
    """The processes that ran the session of ``room_name``."""
    return {
        record["pid"]
        for record in job_lines(worker, room_name)
        if record.get("message") == "RoomIO linked to participant"
    }


def memories(workdir: Path, user: str) -> dict[str, str]:
    with sqlite3.connect(workdir / "memory.db") as db:
        return dict(
            db.execute(
                "SELECT key, value FROM memories WHERE user_id = ? AND category = 'FACT'", (user,)
            ).fetchall()
        )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("room-worker")


@pytest.fixture(scope="module")
def worker(livekit: LiveKitServer, openai_server: OpenAIServer, workdir: Path) -> Iterator[Worker]:
    with Worker(livekit, workdir, **room_env(openai_server.base_url, OPENAI_API_KEY=KEY)) as w:
        yield w


async def greeted(person: Person) -> None:
    await person.until(lambda: person.heard.sound_starts and person.said_by_agent(), 30, "greeting")


async def ask(person: Person, server: OpenAIServer, transcript: str, text: str, tmp: Path) -> float:
    """Say ``text`` (the test server transcribes it as ``transcript``); wait for the audible
    reply; return end of speech → first reply sound, in seconds."""
    server.transcripts.append(transcript)
    replies = len(person.said_by_agent())
    ended = await person.say_and_wait(speak_to_frames(text, tmp))
    await person.until(lambda: person.first_sound_after(ended), 30, f"a reply to {text!r}")
    await person.until(lambda: len(person.said_by_agent()) > replies, 30, "the reply's text")
    heard = person.first_sound_after(ended)
    assert heard is not None
    return heard - ended


async def test_a_person_joining_a_new_room_is_greeted_by_a_job_process(
    livekit: LiveKitServer, worker: Worker, server: OpenAIServer
) -> None:
    name = room()
    async with worker.person("greta", name) as greta:
        await greeted(greta)

    assert greta.said_by_agent()[0] == GENERIC_GREETING  # a new user
    assert greta.heard.peak_rms > 1000  # real sound, not silence
    assert greta.heard.sound_s >= 0.2
    assert worker.process is not None
    assert job_pids(worker, name) - {worker.process.pid}


async def test_a_spoken_turn_is_answered_in_text_and_audio(
    livekit: LiveKitServer,
    worker: Worker,
    server: OpenAIServer,
    tmp_path: Path,
    record_property: object,
) -> None:
    server.script(Rule(text="It is sunny.", when=lambda b: "weather" in last_user_text(b)))
    async with worker.person("sam", room()) as sam:
        await greeted(sam)
        latency = await ask(
            sam, server, "what's the weather like", "What is the weather like?", tmp_path
        )

    assert sam.said_by_agent()[-1] == "It is sunny."
    assert "One moment." not in sam.said_by_agent()  # the model answered within the threshold
    assert [line.text for line in sam.lines if line.speaker == "user"] == [
        "what's the weather like"
    ]
    assert {"listening", "thinking", "speaking"} <= set(sam.agent_states)
    record_property("eos_to_first_reply_audio_ms", round(latency * 1000))  # type: ignore[operator]
    print(f"end of speech -> first reply audio: {latency * 1000:.0f} ms")


async def test_memory_follows_the_person_into_the_next_room(
    livekit: LiveKitServer, worker: Worker, server: OpenAIServer, workdir: Path, tmp_path: Path
) -> None:
    server.script(
        Rule(
            tool_calls=[("saveMemory", {"category": "FACT", "key": "name", "value": "Ada"})],
            when=lambda b: "my name is Ada" in last_user_text(b) and not has_tool_result(b),
        ),
        Rule(text="I will remember that, Ada.", when=has_tool_result),
    )
    first = room()
    async with worker.person("ada", first) as ada:
        await greeted(ada)
        await ask(ada, server, "remember that my name is Ada", "Remember my name.", tmp_path)
    assert memories(workdir, "ada") == {"name": "Ada"}

    server.script(
        Rule(
            text="Welcome back, Ada!",
            when=lambda b: "returning user" in system_text(b) and "Ada" in str(b),
        ),
        Rule(
            text="You are Ada.",
            when=lambda b: last_user_text(b) == "who am I" and '"value": "Ada"' in system_text(b),
        ),
    )
    second = room()
    async with worker.person("ada", second) as ada:
        await greeted(ada)
        await ask(ada, server, "who am I", "Who am I?", tmp_path)
    assert ada.said_by_agent()[0] == "Welcome back, Ada!"
    assert ada.said_by_agent()[-1] == "You are Ada."

    # within the cache's TTL the third visit is greeted from the shared layer: no LLM call
    greetings_before = sum("returning user" in system_text(b) for b in server.bodies("/chat"))
    async with worker.person("ada", room()) as ada:
        await greeted(ada)
    assert ada.said_by_agent()[0] == "Welcome back, Ada!"
    assert (
        sum("returning user" in system_text(b) for b in server.bodies("/chat")) == greetings_before
    )

    first_pids, second_pids = job_pids(worker, first), job_pids(worker, second)
    assert first_pids and second_pids and not first_pids & second_pids  # a new job process


async def test_pool_stats_asked_by_voice_show_reused_connections(
    livekit: LiveKitServer, worker: Worker, server: OpenAIServer, tmp_path: Path
) -> None:
    asking = lambda b: "connections" in last_user_text(b)  # noqa: E731
    server.script(
        Rule(text="Fine, thanks.", when=lambda b: "how are you" in last_user_text(b)),
        Rule(
            tool_calls=[("getConnectionPoolStats", {})],
            when=lambda b: asking(b) and not has_tool_result(b),
        ),
        Rule(text="My connections are healthy.", when=has_tool_result),
    )
    async with worker.person("pat", room()) as pat:
        await greeted(pat)
        await ask(pat, server, "how are you", "How are you?", tmp_path)
        await ask(pat, server, "how are your connections", "How are your connections?", tmp_path)

    assert pat.said_by_agent()[-1] == "My connections are healthy."
    tool = next(
        m
        for body in server.bodies("/chat/completions")
        for m in body["messages"]
        if m["role"] == "tool"
    )
    stats = json.loads(tool["content"])["resources"]["openai"]
    assert stats["health"] == "HEALTHY"
    # greeting, two turns, speech in and out: all over the connections warmed at the start
    assert stats["connections_reused"] > stats["connections_opened"] >= 1
    assert KEY not in tool["content"]


async def test_the_agent_listens_only_to_the_person_its_job_is_for(
    livekit: LiveKitServer, worker: Worker, server: OpenAIServer, tmp_path: Path, workdir: Path
) -> None:
    server.script(
        Rule(
            tool_calls=[("recallMemory", {})],
            when=lambda b: "what do you know" in last_user_text(b) and not has_tool_result(b),
            times=None,
        ),
    )
    name = room()
    async with worker.person("owner", name) as owner:
        await greeted(owner)
        # joins the same room by its own token, which dispatches nothing
        async with Person(livekit.url, "intruder", name) as intruder:
            transcriptions = server.count("/audio/transcriptions")
            server.transcripts.append("what do you know about me")
            ended = await intruder.say_and_wait(
                speak_to_frames("What do you know about me?", tmp_path)
            )
            await asyncio.sleep(2.0)  # time enough for a turn, had the agent listened
            assert server.count("/audio/transcriptions") == transcriptions
            assert owner.first_sound_after(ended) is None
            server.transcripts.clear()

            await owner.leave()
            # the owner left: the session ends and the agent leaves with it
            await asyncio.wait_for(intruder.agent_left.wait(), 20)
            assert intruder.said_by_agent() == []


async def test_a_room_nobody_joins_ends_its_job(
    livekit: LiveKitServer, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    env = room_env(openai_server.base_url, OPENAI_API_KEY=KEY, PARTICIPANT_WAIT_S="2")
    with Worker(livekit, tmp_path, **env) as worker:
        name = room()
        async with api.LiveKitAPI(livekit.http_url, API_KEY, API_SECRET) as lk:
            await lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=30))
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name=worker.agent_name, room=name)
            )
            worker.wait_for(f"nobody joined room {name} within 2 s", 30)
            # the job process leaves the room and is done
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                rooms = await lk.room.list_participants(api.ListParticipantsRequest(room=name))
                if not rooms.participants:
                    break
                await asyncio.sleep(0.2)
            assert not rooms.participants
        assert "Traceback" not in worker.output()


@pytest.mark.parametrize("run", range(5))
async def test_four_rooms_at_once_are_each_answered_and_keep_their_own_memory(
    run: int, worker: Worker, server: OpenAIServer, workdir: Path, tmp_path: Path
) -> None:
    people = {
        f"{name}{run}": tone
        for name, tone in (("ana", 2600), ("ben", 3100), ("cai", 3600), ("dee", 4100))
    }
    for who, tone in people.items():
        server.transcripts_by_tone[tone] = f"i am {who}"
        server.script(
            Rule(
                tool_calls=[("saveMemory", {"category": "FACT", "key": "name", "value": who})],
                when=lambda b, who=who: (
                    f"i am {who}" == last_user_text(b) and not has_tool_result(b)
                ),
            ),
        )
    server.script(Rule(text="Nice to meet you.", when=has_tool_result, times=None))

    async def visit(who: str) -> list[str]:
        async with worker.person(who, room()) as person:
            await greeted(person)
            # the tone under the voice lets the test server transcribe who is speaking
            frames = speak_to_frames(f"I am {who}.", tmp_path, tone_hz=people[who])
            ended = await person.say_and_wait(frames)
            await person.until(lambda: person.first_sound_after(ended), 45, "a reply")
            await person.until(lambda: "Nice to meet you." in person.said_by_agent(), 30, "text")
            return person.said_by_agent()

    heard = await asyncio.gather(*(visit(who) for who in people))

    assert all("Nice to meet you." in said for said in heard)
    # every save went to the user who said it, and to no one else
    assert {who: memories(workdir, who) for who in people} == {who: {"name": who} for who in people}


# -- the worker under faults -----------------------------------------------------------------


async def test_sigterm_mid_conversation_finishes_the_turn_and_loses_no_write(
    livekit: LiveKitServer, server: OpenAIServer, tmp_path: Path
) -> None:
    learned = {"memories": [{"category": "FACT", "key": "city", "value": "Oslo"}]}
    server.script(
        Rule(
            text="Oslo is lovely.",
            when=lambda b: last_user_text(b) == "i live in oslo",
            fault=Fault(delay_s=1.0),  # the reply is still on its way when SIGTERM lands
        ),
        Rule(text=json.dumps(learned), when=lambda b: "Extract facts" in system_text(b)),
    )
    env = room_env(server.base_url, OPENAI_API_KEY=KEY, DRAIN_TIMEOUT_S="1")
    worker = Worker(livekit, tmp_path, **env).start()
    try:
        async with worker.person("olga", room()) as olga:
            await greeted(olga)
            server.transcripts.append("i live in oslo")
            ended = await olga.say_and_wait(speak_to_frames("I live in Oslo.", tmp_path))
            await olga.until(lambda: server.count("/chat/completions") >= 1, 10, "the turn")
            code = await asyncio.to_thread(worker.terminate)
            assert olga.agent_left.is_set()
    finally:
        worker.terminate()

    assert code == 0
    assert olga.first_sound_after(ended) is not None  # the reply in flight was heard
    assert "Oslo is lovely." in olga.said_by_agent()
    assert memories(tmp_path, "olga") == {"city": "Oslo"}
    with sqlite3.connect(tmp_path / "outbox.db") as outbox:
        assert outbox.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    output = worker.output()
    assert "connection pool closed" in output
    assert "was never awaited" not in output
    assert "Traceback" not in output


async def test_the_worker_reconnects_after_the_livekit_server_restarts(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    with LiveKitServer() as livekit:
        env = room_env(openai_server.base_url, OPENAI_API_KEY=KEY)
        with Worker(livekit, tmp_path, **env) as worker:
            async with worker.person("rita", room()) as rita:
                await greeted(rita)
            livekit.kill()
            worker.wait_for("failed to connect to livekit, retrying", 60)
            livekit.start()
            worker.wait_for("registered worker", 90, count=2)
            async with worker.person("rita", room()) as rita:
                await greeted(rita)
            assert worker.process is not None and worker.process.poll() is None


async def test_no_secret_reaches_the_output_of_the_worker_or_its_jobs(
    livekit: LiveKitServer,
    server: OpenAIServer,
    pg_admin_dsn: str,
    tmp_path: Path,
) -> None:
    password = "marker-db-password-Hv4Kp9"
    dsn = pg_admin_dsn.replace("postgres@", f"postgres:{password}@", 1)
    # the provider refuses the key and quotes it back, as OpenAI's 401 does
    server.script(
        Rule(fault=Fault(status=401, echo_key=True), times=None),
        Rule(path="/audio/speech", fault=Fault(status=401, echo_key=True), times=None),
    )
    env = room_env(server.base_url, OPENAI_API_KEY=KEY)
    env.update(MEMORY_BACKEND="postgres", DATABASE_URL=dsn)
    with Worker(livekit, tmp_path, **env) as worker:
        async with worker.person("sid", room()) as sid:
            await sid.until(lambda: "Incorrect API key" in worker.output(), 30, "the refusal")
            await asyncio.sleep(1.0)
    output = worker.output()
    assert "Incorrect API key provided: ***" in output  # the error was logged, the key masked
    assert KEY not in output
    assert password not in output


# -- never silent ----------------------------------------------------------------------------


def phrases_rendered(workdir: Path) -> bool:
    return len(list(workdir.glob("phrases/*/*.wav"))) == len(PHRASES)


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
            waits = []
            for n in range(3):
                server.transcripts.append(f"question {n}")
                ended = await sol.say_and_wait(speak_to_frames(f"Question {n}?", tmp_path))
                await sol.until(
                    lambda n=n: sol.said_by_agent().count("Here is my answer.") > n, 30, "answer"
                )
                heard = sol.first_sound_after(ended)
                assert heard is not None
                waits.append(heard - ended)
                await asyncio.sleep(1.0)
    said = sol.said_by_agent()
    assert said.count("Here is my answer.") == 3  # every question answered
    assert said.count("One moment.") == 3  # and none waited in silence for it
    assert all(wait < 2.5 for wait in waits), waits  # heard before the model's first token
    assert server.count("/audio/transcriptions") == 3  # speech was never refused
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
