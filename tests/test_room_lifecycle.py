"""The agent where its users meet it: a real LiveKit room on a local server, the worker
as a real process (`python agent.py start`), and people who join with the LiveKit SDK.

Here: rooms nobody joins, rooms at once, SIGTERM mid-conversation, the server restarting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from livekit import api

from room.livekit_server import API_KEY, API_SECRET, LiveKitServer
from room.ready_room import ReadyRoom
from room.rooms import RoomConfig
from testbed.audio_io import speak_to_frames
from testbed.openai_server import (
    Fault,
    OpenAIServer,
    Rule,
    last_user_text,
    system_text,
)
from testbed.person import Person
from testbed.waiting import wait_until
from testbed.worker import Worker, room_env
from tests.support.rooms import (
    KEY,
    dispatched_room,
    four_people,
    greeted,
    greeting_said,
    memories,
    room,
    script_introductions,
)
from tools.dispatch import dispatch_metadata
from tools.memory.stores.sqlite import SCHEMA

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("named", [None, "ada"], ids=["naming-nobody", "naming-a-person"])
async def test_a_room_nobody_joins_ends_its_job(
    livekit: LiveKitServer, openai_server: OpenAIServer, tmp_path: Path, named: str | None
) -> None:
    env = room_env(openai_server.base_url, OPENAI_API_KEY=KEY, PARTICIPANT_WAIT_S="2")
    metadata = dispatch_metadata(named) if named else ""
    with Worker(livekit, tmp_path, **env) as worker:
        async with api.LiveKitAPI(livekit.http_url, API_KEY, API_SECRET) as lk:
            name = await dispatched_room(lk, worker, empty_timeout=30, metadata=metadata)
            who = "the person the dispatch named never" if named else "nobody"
            worker.wait_for(f"{who} joined room {name} within 2 s", 30)

            # the job process leaves the room and is done
            async def left() -> bool:
                request = api.ListParticipantsRequest(room=name)
                return not (await lk.room.list_participants(request)).participants

            await wait_until(left, 20, what="the job to leave the room", every_s=0.2)
        assert "Traceback" not in worker.output()


async def test_a_dispatch_naming_someone_else_never_serves_the_person_who_joins(
    livekit: LiveKitServer, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    """The job loads the named person's memories before anyone is in: whoever joins instead
    is neither greeted nor heard as them, and the job ends when the named person never
    comes."""
    env = room_env(openai_server.base_url, OPENAI_API_KEY=KEY, PARTICIPANT_WAIT_S="3")
    with Worker(livekit, tmp_path, **env) as worker:
        async with api.LiveKitAPI(livekit.http_url, API_KEY, API_SECRET) as lk:
            name = await dispatched_room(
                lk, worker, empty_timeout=30, metadata=dispatch_metadata("ada")
            )
            async with Person(livekit.url, "bob", name) as bob:
                never = "the person the dispatch named never joined"
                worker.wait_for(f"{never} room {name} within 3 s", 30)
                await asyncio.wait_for(bob.agent_left.wait(), 20)
                assert bob.said_by_agent() == [] and not bob.heard.sound_starts
        assert "Traceback" not in worker.output()


async def test_a_ready_room_serves_only_the_person_the_page_names_and_ends_when_closed(
    livekit: LiveKitServer, server: OpenAIServer, tmp_path: Path
) -> None:
    """The page keeps a room with the agent in it, its voice published, before anyone asks.
    Given to Ada, the room
    is named for her: she is greeted by name, and the token she got sends no second agent.
    The room readied next, never given out, ends its job when the page closes it."""
    env = room_env(server.base_url, OPENAI_API_KEY=KEY)
    with sqlite3.connect(tmp_path / "memory.db") as db:
        db.executescript(SCHEMA)
        db.execute(
            "INSERT INTO memories VALUES ('ada', 'FACT', 'name', 'Ada', 1.0, 1.0)",
        )
    server.script(
        Rule(text="Welcome back, Ada.", when=lambda b: "returning user" in system_text(b))
    )
    with Worker(livekit, tmp_path, **env) as worker:
        config = RoomConfig(livekit.url, API_KEY, API_SECRET, agent_name=worker.agent_name)
        async with api.LiveKitAPI(livekit.http_url, API_KEY, API_SECRET) as lk:
            page = ReadyRoom(config, lk)
            page.start()
            try:
                assert await page.wait_ready(60)
                ready = page.ready_room
                assert ready is not None

                async def voice_published() -> bool:
                    them = await lk.room.list_participants(api.ListParticipantsRequest(room=ready))
                    return any(
                        t.type == api.TrackType.AUDIO for p in them.participants for t in p.tracks
                    )

                # the agent's voice is there before anyone is: joining, Ada subscribes at once
                await wait_until(voice_published, 20, what="the agent's track", every_s=0.1)
                given = await page.take("ada")
                assert given["room"] == ready
                claims = api.TokenVerifier(API_KEY, API_SECRET).verify(given["token"])
                assert not (claims.room_config and claims.room_config.agents)
                async with Person(
                    given["url"], "ada", given["room"], access_token=given["token"]
                ) as ada:
                    await greeted(ada)
                assert ada.said_by_agent()[0] == "Welcome back, Ada."
                assert await page.wait_ready(60)  # the next one
                unused = page.ready_room
                assert unused is not None and unused != given["room"]
            finally:
                await page.aclose()
            worker.wait_for(f"ready room {unused} closed before it was given out", 30)
            rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[unused]))
            assert not rooms.rooms
        assert "Traceback" not in worker.output()


async def test_a_room_closed_while_the_agent_waits_is_nobody_came_not_a_crash(
    livekit: LiveKitServer, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    # a caller who hung up before the agent arrived: LiveKit closes the room around the
    # waiting agent, which is there alone
    env = room_env(openai_server.base_url, OPENAI_API_KEY=KEY, PARTICIPANT_WAIT_S="60")
    with Worker(livekit, tmp_path, **env) as worker:
        async with api.LiveKitAPI(livekit.http_url, API_KEY, API_SECRET) as lk:
            name = await dispatched_room(lk, worker, empty_timeout=2)
            worker.wait_for(f"room {name} closed before anybody joined; ending the job", 40)
            worker.wait_for("process exiting", 30)
        output = worker.output()
        assert "Traceback" not in output
        assert "room disconnected while waiting" not in output
        # the job's own errors (the WebRTC library may say its data channels closed: they did)
        errors = [
            record
            for line in output.splitlines()
            if line.startswith("{") and (record := json.loads(line))["level"] == "ERROR"
        ]
        assert [e["message"] for e in errors if e["name"] != "livekit"] == []


def job_requests(worker: Worker) -> set[str]:
    """The rooms the worker said yes to."""
    rooms = set()
    for line in worker.output().splitlines():
        if '"received job request"' in line:
            rooms.add(json.loads(line)["room"])
    return rooms


async def test_a_burst_of_rooms_on_an_idle_worker_gets_exactly_its_capacity(
    livekit: LiveKitServer, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    # one warm process: livekit's own estimate took a waiting room for a whole worker,
    # so an idle worker said yes to one room of a burst and nobody ever joined the others
    env = room_env(
        openai_server.base_url,
        OPENAI_API_KEY=KEY,
        MAX_CONVERSATIONS="3",
        IDLE_PROCESSES="1",
        PARTICIPANT_WAIT_S="20",
    )
    with Worker(livekit, tmp_path, **env) as worker:
        names = [room() for _ in range(4)]
        async with api.LiveKitAPI(livekit.http_url, API_KEY, API_SECRET) as lk:
            for name in names:
                await lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=60))
            await asyncio.gather(
                *(
                    lk.agent_dispatch.create_dispatch(
                        api.CreateAgentDispatchRequest(agent_name=worker.agent_name, room=name)
                    )
                    for name in names
                )
            )

            def refused() -> list[str]:
                lines = livekit.log().splitlines()
                return [
                    name for name in names for line in lines if "no worker" in line and name in line
                ]

            await wait_until(lambda: len(job_requests(worker)) == 3, 30, what="three rooms taken")
            # the fourth is refused at once, and livekit tells the room's creator so
            await wait_until(refused, 30, what="the fourth room refused")
            worker.wait_for("worker is full: 3 of 3 conversations", 30)
        assert job_requests(worker) | set(refused()) == set(names)
        assert len(job_requests(worker)) == 3
        assert "Traceback" not in worker.output()


async def test_a_person_arriving_as_a_place_frees_on_a_full_worker_is_answered(
    livekit: LiveKitServer, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    # livekit-server dispatches no room to a worker it last heard was full, and never
    # retries it: the worker must say a place is free as soon as it is, not at its next
    # status report (every 2.5 s)
    env = room_env(openai_server.base_url, OPENAI_API_KEY=KEY, MAX_CONVERSATIONS="1")
    with Worker(livekit, tmp_path, **env) as worker:
        async with worker.person("first", room()) as first:
            await greeted(first)
            await asyncio.to_thread(worker.wait_for, "worker is full: 1 of 1 conversations", 30)
        await asyncio.to_thread(worker.wait_for, "worker takes rooms again", 30)
        async with worker.person("next", room()) as following:
            await greeted(following)
        assert "Traceback" not in worker.output()


async def test_a_worker_is_sent_as_many_conversations_as_its_capacity(
    livekit: LiveKitServer, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    # livekit-server sends a worker no room once its reported load reaches the server's
    # target load (0.7 by default): reported as a share of 1.0, a worker of four places
    # was sent no fourth room (3 of 4 is 0.75), and that person sat alone
    env = room_env(openai_server.base_url, OPENAI_API_KEY=KEY, MAX_CONVERSATIONS="4")
    with Worker(livekit, tmp_path, **env) as worker:
        async with contextlib.AsyncExitStack() as stack:
            for who in ("ann", "ben", "cat"):
                await greeted(await stack.enter_async_context(worker.person(who, room())))
            await asyncio.sleep(3.0)  # livekit-server has heard the load of three
            async with worker.person("dan", room()) as dan:
                await greeted(dan)
            await asyncio.to_thread(worker.wait_for, "worker is full: 4 of 4 conversations", 30)
        assert "Traceback" not in worker.output()


@pytest.mark.parametrize("run", range(5))
async def test_four_rooms_at_once_are_each_answered_and_keep_their_own_memory(
    run: int, worker: Worker, server: OpenAIServer, workdir: Path, tmp_path: Path
) -> None:
    people = four_people(str(run))
    script_introductions(server, people)
    # the earlier runs' sessions close for a few seconds after their people leave, and the
    # worker counts them until they have: on a worker left full, a fourth room is refused
    await worker.until_idle()
    full_before = worker.output().count("worker is full")

    async def visit(who: str) -> list[str]:
        async with worker.person(who, room()) as person:
            await greeting_said(person)
            # the tone under the voice lets the test server transcribe who is speaking
            frames = speak_to_frames(f"I am {who}.", tmp_path, tone_hz=people[who])
            ended = await person.say_and_wait(frames)
            await person.until(lambda: person.first_sound_after(ended), 45, "a reply")
            await person.until(lambda: "Nice to meet you." in person.said_by_agent(), 30, "text")
            return person.said_by_agent()

    heard = await asyncio.gather(*(visit(who) for who in people))

    assert all("Nice to meet you." in said for said in heard)
    assert worker.output().count("worker is full") == full_before, "the rooms met a full worker"
    # every save went to the user who said it, and to no one else
    assert {who: memories(workdir, who) for who in people} == {who: {"name": who} for who in people}


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
