"""Past one LiveKit server: two livekit-server nodes sharing a Redis (LiveKit's own
distributed mode), one worker registered on each, PostgreSQL memory and the Redis greeting
cache shared. Rooms reached through either node are served by either worker, and what a
person said through one node is remembered when they come back through the other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import pytest

from room.livekit_server import LiveKitServer
from room.ports import free_tcp_port
from testbed.audio_io import speak_to_frames
from testbed.openai_server import OpenAIServer
from testbed.person import Person
from testbed.waiting import wait_until
from testbed.worker import ROOT, Worker, agent_env
from tests.support.rooms import (
    KEY,
    four_people,
    greeted,
    job_pids,
    room,
    script_introductions,
    shared_store_env,
)
from tools.memory import MEMORY_BLOCK_START

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

AGENT = f"cluster-{uuid.uuid4().hex[:6]}"
# how often a worker tells its node its load (livekit's UPDATE_STATUS_INTERVAL), which is
# what the nodes weigh when they choose a worker for a room
STATUS_INTERVAL_S = 2.5


@pytest.fixture(scope="module")
def nodes(redis_url: str) -> Iterator[tuple[LiveKitServer, LiveKitServer]]:
    # the nodes' routing in a database of their own, beside the greeting cache's
    shared = redis_url.removeprefix("redis://").rsplit("/", 1)[0] + "/1"
    with LiveKitServer(redis=shared) as a, LiveKitServer(redis=shared) as b:
        yield a, b


@pytest.fixture(scope="module")
def workers(
    nodes: tuple[LiveKitServer, LiveKitServer],
    openai_server: OpenAIServer,
    pg_dsn: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Worker, Worker]]:
    env = shared_store_env(openai_server.base_url, AGENT, pg_dsn, redis_url)
    # each machine its own directory: its outbox and phrases
    a = Worker(nodes[0], tmp_path_factory.mktemp("machine-a"), **env)
    b = Worker(nodes[1], tmp_path_factory.mktemp("machine-b"), **env)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.terminate()
        b.terminate()


def rooms_taken(worker: Worker) -> int:
    return worker.output().count('"received job request"')


def served_by(workers: tuple[Worker, Worker], room_name: str) -> Worker:
    (worker,) = [w for w in workers if job_pids(w, room_name)]
    return worker


async def test_either_node_serves_either_worker_and_memory_crosses_nodes(
    nodes: tuple[LiveKitServer, LiveKitServer],
    workers: tuple[Worker, Worker],
    server: OpenAIServer,
    pg_dsn: str,
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:4]
    people = four_people(run)
    through = dict(zip(people, (nodes[0], nodes[0], nodes[1], nodes[1]), strict=True))
    script_introductions(server, people)
    before = [rooms_taken(w) for w in workers]

    rooms: dict[str, str] = {}

    async def introduce(person: Person, who: str) -> None:
        frames = speak_to_frames(f"I am {who}.", tmp_path, tone_hz=people[who])
        await person.say_and_wait(frames)
        await person.until(lambda: "Nice to meet you." in person.said_by_agent(), 45, "reply")

    # they join one after the other and stay, each once the nodes know the load the last
    # one left: a node sends the next room to the worker with room to spare, on either node
    async with contextlib.AsyncExitStack() as stack:
        joined = {}
        for who in people:
            rooms[who] = room()
            joined[who] = await stack.enter_async_context(
                Person(through[who].url, who, rooms[who], agent=AGENT)
            )
            await greeted(joined[who])
            await asyncio.sleep(STATUS_INTERVAL_S + 0.5)
        await asyncio.gather(*(introduce(joined[who], who) for who in people))
    taken = [rooms_taken(w) - b for w, b in zip(workers, before, strict=True)]
    assert sum(taken) == 4 and min(taken) >= 1, taken
    # the first two came through node A, and the second was served by node B's worker
    first, second = (served_by(workers, rooms[who]) for who in list(people)[:2])
    assert first is not second
    conn = await asyncpg.connect(pg_dsn)
    try:
        stored = await conn.fetch(
            "SELECT user_id, value FROM memories WHERE key = 'name' AND user_id = ANY($1)",
            list(people),
        )
    finally:
        await conn.close()
    assert {r["user_id"]: r["value"] for r in stored} == {who: who for who in people}

    # back through the other node, all at once: the greeting is composed from what the
    # first node's rooms stored
    server.reset()
    other = {who: nodes[1] if node is nodes[0] else nodes[0] for who, node in through.items()}

    async def come_back(who: str) -> None:
        async with Person(other[who].url, who, room(), agent=AGENT) as person:
            await greeted(person)

    await asyncio.gather(*(come_back(who) for who in people))
    greetings = [
        json.dumps(body)
        for body in server.bodies("/chat/completions")
        if MEMORY_BLOCK_START in json.dumps(body)
    ]
    for who in people:
        assert any(f'\\"value\\": \\"{who}\\"' in g for g in greetings), who
    for worker in workers:
        assert "Traceback" not in worker.output()


def two_free_ports() -> int:
    """A free port whose next one is free too: `make cluster` serves a page on each."""
    for _ in range(100):
        port = free_tcp_port()
        if port >= 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free ports in a row")


async def test_make_cluster_serves_a_room_through_each_node_and_ctrl_c_stops_everything(
    server: OpenAIServer, tmp_path: Path
) -> None:
    env = agent_env(
        tmp_path,
        OPENAI_BASE_URL=server.base_url,
        OPENAI_API_KEY=KEY,
        ROOM_PORT=str(two_free_ports()),
        PYTHONPATH=str(ROOT),
    )
    cluster = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "room.cluster"],
        cwd=tmp_path,  # no .env of the checkout
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def drain() -> None:  # the workers log to the same pipe
        assert cluster.stdout is not None
        lines.extend(cluster.stdout)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    started: list[psutil.Process] = []
    try:

        def addresses() -> list[str]:
            found = [line for line in lines if line.startswith("Open ")]
            return found if len(found) == 2 else []

        pages = await wait_until(addresses, 120, what="the two pages' addresses")
        started = psutil.Process(cluster.pid).children(recursive=True)
        nodes = {line.split("LiveKit at ")[1].split(";")[0] for line in pages}
        assert len(nodes) == 2, pages
        async with aiohttp.ClientSession() as http:
            for line in pages:
                origin, key = line.split()[1].split("/#key=")
                async with http.post(
                    f"{origin}/token",
                    json={"name": "Ada"},
                    headers={"X-Room-Key": key, "Origin": origin},
                ) as response:
                    assert response.status == 200, await response.text()
                    given = await response.json()
                assert given["url"] in nodes
                async with Person(
                    given["url"], "Ada", given["room"], access_token=given["token"]
                ) as person:
                    await greeted(person)
        cluster.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(cluster.wait, 90) == 0
    finally:
        if cluster.poll() is None:
            # whatever it started by then, even if the test failed before it printed
            with contextlib.suppress(psutil.Error):
                started = [*started, *psutil.Process(cluster.pid).children(recursive=True)]
            for process in [*started, psutil.Process(cluster.pid)]:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            cluster.wait(10)
        reader.join(10)
        if cluster.stdout is not None:
            cluster.stdout.close()
    # Redis, both nodes and both workers (and their job processes) stopped with it
    assert [p.pid for p in started if p.is_running() and p.status() != "zombie"] == []
    assert "Traceback" not in "".join(lines)
