"""People and a worker in real rooms: the room tests' shared steps."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

from livekit import api

from testbed.audio_io import speak_to_frames
from testbed.openai_server import OpenAIServer, Rule, has_tool_result, last_user_text
from testbed.person import Person
from testbed.worker import Worker, room_env
from tools.conversation import PHRASES

KEY = "marker-provider-key-Qx7Zr2"  # not sk-shaped: only the pool's own redaction hides it


def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


async def dispatched_room(
    lk: api.LiveKitAPI, worker: Worker, *, empty_timeout: int, metadata: str = ""
) -> str:
    """A new room nobody has joined, with the worker's agent dispatched to it."""
    name = room()
    await lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=empty_timeout))
    await lk.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name=worker.agent_name, room=name, metadata=metadata)
    )
    return name


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


async def greeted(person: Person) -> None:
    await person.until(lambda: person.heard.sound_starts and person.said_by_agent(), 30, "greeting")


async def heard_greeting_out(person: Person) -> None:
    """The greeting began and played out: what they heard of it is all there was (leaving
    as soon as it began would count only the part that came before its words did)."""
    await greeted(person)
    await person.until_quiet(0.5)


async def greeting_said(person: Person) -> None:
    """The greeting's words arrived. Where many rooms start at once on two cores, the
    person's media path can still be opening while the greeting plays: what they must hear
    then is the reply to what they say next."""
    await person.until(lambda: person.said_by_agent(), 30, "greeting")


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


def phrases_rendered(workdir: Path) -> bool:
    return len(list(workdir.glob("phrases/*/*.wav"))) == len(PHRASES)


def four_people(suffix: str) -> dict[str, int]:
    """Four people and the tone under each one's voice, by which the test server knows who
    speaks; ``suffix`` keeps them apart from other runs' people."""
    return {
        f"{name}{suffix}": tone
        for name, tone in (("ana", 2600), ("ben", 3100), ("cai", 3600), ("dee", 4100))
    }


def script_introductions(server: OpenAIServer, people: dict[str, int]) -> None:
    """ "I am <who>." is heard as such and saved as their name; the reply is "Nice to meet
    you."."""
    for who, tone in people.items():
        server.transcripts_by_tone[tone] = f"i am {who}"
        server.script(
            Rule(
                tool_calls=[("saveMemory", {"category": "FACT", "key": "name", "value": who})],
                # a loaded machine's VAD may cut the sentence in two, and the test server
                # hears the whole sentence in each part (by its tone): "i am ana i am ana";
                # every turn's request gets the call (a discarded preemptive reply asked
                # first), and the post-turn calls, which offer no tools, never do
                when=lambda b, who=who: (
                    f"i am {who}" in last_user_text(b) and "tools" in b and not has_tool_result(b)
                ),
                times=None,
            ),
        )
    server.script(Rule(text="Nice to meet you.", when=has_tool_result, times=None))


def shared_store_env(
    base_url: str, agent: str, database_url: str, redis_url: str
) -> dict[str, str]:
    """A worker of a fleet: dispatched as ``agent``, memory in PostgreSQL, the cache in Redis."""
    return room_env(
        base_url,
        OPENAI_API_KEY=KEY,
        AGENT_NAME=agent,
        MEMORY_BACKEND="postgres",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        # what crosses machines is asked here, not how fast: the greeting waits for it
        MEMORY_RECALL_BUDGET_MS="3000",
    )
