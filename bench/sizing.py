"""`make bench-sizing`: what one conversation costs each part of a fleet, on a local cluster.

Two livekit-server nodes sharing a Redis of their own (LiveKit's distributed mode), one
worker registered on each, memory in PostgreSQL and the greeting cache in a second Redis
(so each Redis counts only its own clients), the AI provider in a process of its own. N
people (default 4) join through the two nodes in turn and each speaks three sentences with
pauses. Counted over their conversations, from the servers' own counters: AI connections
and requests, PostgreSQL transactions, rows written, sessions and busy time, Redis commands
and connections, per turn; peak PostgreSQL backends and Redis clients; each worker's and
node's memory (PSS and USS) and CPU, per conversation. Then redis-benchmark on the cache's
Redis, and, with the knee `make bench-load` measured (bench/load.json), the fleet for
1,000 and 100,000 conversations (bench/sizing_report.py).

    python -m bench.sizing [--quick] [--out DIR] [--people 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench.ai_endpoint import AIEndpoint
from bench.counters import RedisCounter, pg_count
from bench.load import DELAYS, SENTENCES, Heard, conversation
from bench.process_tree import TreeSampler
from bench.provenance import stamp
from bench.readme import publish
from bench.services import postgres, throwaway_redis
from bench.sizing_report import fleet, table
from room.livekit_server import LiveKitServer, ensure_binary
from testbed.audio_io import speak_to_frames
from testbed.worker import Worker
from tools.worker import settle_heap

HERE = Path(__file__).resolve().parent
KEY = "bench-sizing-key"
AGENT = "sizing"
# a PostgreSQL backend reports its statistics within 10 s of going idle
SETTLE_S = 12.0
IDLE_S = 20.0


@dataclass
class Cluster:
    ai: AIEndpoint
    nodes: tuple[LiveKitServer, LiveKitServer]
    workers: tuple[Worker, Worker]
    admin_dsn: str
    cache_url: str
    routing_url: str
    database: str
    cache: RedisCounter
    routing: RedisCounter

    async def counts(self) -> dict[str, Any]:
        return {
            "ai": self.ai.counters(),
            "pg": await pg_count(self.admin_dsn, self.database),
            "cache": await asyncio.to_thread(self.cache.read),
            "routing": await asyncio.to_thread(self.routing.read),
        }

    def samplers(self) -> list[TreeSampler]:
        """The workers' trees, then the nodes', each sampled by a process of its own."""
        processes = [w.process for w in self.workers] + [n.process for n in self.nodes]
        assert all(p is not None for p in processes)
        return [TreeSampler(p.pid, every_s=1.0) for p in processes if p is not None]


@contextlib.contextmanager
def cluster(ai: AIEndpoint, workdir: Path) -> Iterator[Cluster]:
    with postgres() as admin_dsn, throwaway_redis() as cache_url, throwaway_redis() as routing:
        database = f"sizing_{uuid.uuid4().hex[:8]}"
        asyncio.run(admin(admin_dsn, f"CREATE DATABASE {database}"))
        try:
            yield from _cluster(ai, workdir, admin_dsn, database, cache_url, routing)
        finally:
            asyncio.run(admin(admin_dsn, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))


def _cluster(  # the nodes and workers on a database of their own
    ai: AIEndpoint, workdir: Path, admin_dsn: str, database: str, cache_url: str, routing: str
) -> Iterator[Cluster]:
    database_url = admin_dsn.rsplit("/", 1)[0] + f"/{database}"
    shared = urlsplit(routing).netloc + "/0"
    env = {
        **ai.env(),
        "OPENAI_API_KEY": KEY,
        "AGENT_NAME": AGENT,
        "MEMORY_BACKEND": "postgres",
        "DATABASE_URL": database_url,
        "REDIS_URL": cache_url,
    }
    for machine in ("machine-a", "machine-b"):
        (workdir / machine).mkdir(parents=True)
    with LiveKitServer(redis=shared) as a, LiveKitServer(redis=shared) as b:
        workers = (
            Worker(a, workdir / "machine-a", **env),
            Worker(b, workdir / "machine-b", **env),
        )
        counters = RedisCounter(cache_url), RedisCounter(routing)
        try:
            for worker in workers:
                worker.start()
            yield Cluster(ai, (a, b), workers, admin_dsn, cache_url, routing, database, *counters)
        finally:
            for worker in workers:
                worker.terminate()
            for counter in counters:
                counter.close()


async def admin(admin_dsn: str, sql: str) -> None:
    db = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await db.execute(sql)
    finally:
        await db.close()


def job_pids(workers: tuple[Worker, Worker]) -> set[int]:
    """The job processes that have held a conversation, from the workers' logs."""
    pids = set()
    for worker in workers:
        for line in worker.output().splitlines():
            if '"RoomIO linked to participant"' in line:
                with contextlib.suppress(ValueError, KeyError):
                    pids.add(int(json.loads(line)["pid"]))
    return pids


def difference(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    ai_before = before["ai"]["requests"]
    return {
        "ai_connections": after["ai"]["connections"] - before["ai"]["connections"],
        "ai_requests": {
            path: count - ai_before.get(path, 0)
            for path, count in after["ai"]["requests"].items()
            if count - ai_before.get(path, 0)
        },
        "pg": after["pg"] - before["pg"],
        "cache": after["cache"] - before["cache"],
        "routing": after["routing"] - before["routing"],
    }


async def idle(c: Cluster, seconds: float) -> dict[str, Any]:
    """The cluster with nobody in it: its memory, and what it sends on its own per second."""
    samplers = c.samplers()
    before = await c.counts()
    began = time.perf_counter()
    with contextlib.ExitStack() as sampling:
        for sampler in samplers:
            sampling.enter_context(sampler)
        await asyncio.sleep(seconds)
    trees = [sampler.tree for sampler in samplers]
    await asyncio.sleep(SETTLE_S)
    wall = time.perf_counter() - began
    spent = difference(await c.counts(), before)
    return {
        "workers_pss_mb": round(sum(t.peak_pss_mb for t in trees[:2]), 1),
        "workers_uss_mb": round(sum(t.peak_uss_mb for t in trees[:2]), 1),
        "job_processes": sum(t.peak_processes for t in trees[:2]),  # prewarmed, idle
        "nodes_pss_mb": round(sum(t.peak_pss_mb for t in trees[2:]), 1),
        "pg_backends": spent["pg"].backends,
        "cache_clients": spent["cache"].clients,
        "pg_transactions_per_s": round(spent["pg"].transactions / wall, 2),
        "cache_commands_per_s": round(spent["cache"].commands / wall, 2),
        "routing_commands_per_s": round(spent["routing"].commands / wall, 2),
    }


async def talk(
    c: Cluster, n: int, speech: list[list[Any]], turns: int, routing_idle_per_s: float
) -> dict[str, Any]:
    samplers = c.samplers()
    warm = job_pids(c.workers)
    settle_heap()  # a full collection of this process mid-run stalls the people's audio
    before = await c.counts()
    peak_backends = peak_clients = 0
    began = time.perf_counter()
    spans: list[float] = []

    async def one(i: int) -> Heard:
        await asyncio.sleep(0.3 * i)
        started = time.perf_counter()
        heard = await conversation(c.workers[i % 2], speech, turns, 0.0)
        spans.append(time.perf_counter() - started)
        return heard

    with contextlib.ExitStack() as sampling:
        for sampler in samplers:
            sampling.enter_context(sampler)
        people = asyncio.gather(*(one(i) for i in range(n)))
        while not people.done():
            now = await c.counts()
            peak_backends = max(peak_backends, now["pg"].backends)
            peak_clients = max(peak_clients, now["cache"].clients)
            await asyncio.sleep(1.0)
        heard = people.result()
    trees = [sampler.tree for sampler in samplers]
    talked = time.perf_counter() - began
    await asyncio.sleep(SETTLE_S)  # the last learning lands, the backends report
    spent = difference(await c.counts(), before)
    elapsed = time.perf_counter() - began
    turns_done = sum(len(h.waits) for h in heard)
    if not turns_done:
        raise SystemExit("bench.sizing: no turn was answered; the workers' logs say why")
    # what the nodes send to their Redis with nobody in them is theirs, not a conversation's
    routing = spent["routing"].commands - routing_idle_per_s * elapsed
    worker_cpu = sum(t.cpu_s_used() for t in trees[:2])
    node_cpu = sum(t.cpu_s_used() for t in trees[2:])
    pg, cache = spent["pg"], spent["cache"]
    jobs = job_pids(c.workers) - warm
    job_pss = [t.peak_pss_mb_of[pid] for t in trees[:2] for pid in jobs if pid in t.peak_pss_mb_of]
    job_uss = [t.peak_uss_mb_of[pid] for t in trees[:2] for pid in jobs if pid in t.peak_uss_mb_of]
    return {
        "people": n,
        "served": sum(h.served for h in heard),
        "turns": turns_done,
        "turns_failed": sum(h.failed for h in heard),
        "conversation_s": round(sum(spans), 1),
        "wall_s": round(talked, 1),
        "per_turn": {
            "ai_connections": round(spent["ai_connections"] / turns_done, 2),
            "ai_requests": {p: round(k / turns_done, 2) for p, k in spent["ai_requests"].items()},
            "pg_transactions": round(pg.transactions / turns_done, 2),
            "pg_rows_written": round(pg.rows_written / turns_done, 2),
            "pg_sessions": round(pg.sessions / turns_done, 2),
            "pg_busy_ms": round(1000 * pg.busy_s / turns_done, 2),
            "cache_commands": round(cache.commands / turns_done, 2),
            "cache_connections": round(cache.connections / turns_done, 2),
        },
        "peak": {
            "pg_backends": peak_backends,
            "cache_clients": peak_clients,
            "workers_pss_mb": round(sum(t.peak_pss_mb for t in trees[:2]), 1),
            "workers_uss_mb": round(sum(t.peak_uss_mb for t in trees[:2]), 1),
            "nodes_pss_mb": round(sum(t.peak_pss_mb for t in trees[2:]), 1),
        },
        # each job process holds one conversation
        "job_pss_mb": round(sum(job_pss) / len(job_pss), 1) if job_pss else None,
        "job_uss_mb": round(sum(job_uss) / len(job_uss), 1) if job_uss else None,
        "jobs_sampled": len(job_pss),
        # CPU over the time people were in their rooms, per conversation
        "worker_cores_per_conversation": round(worker_cpu / sum(spans), 3),
        "node_cores_per_conversation": round(node_cpu / sum(spans), 4),
        "routing_commands_per_conversation_s": round(max(routing, 0) / sum(spans), 2),
    }


def redis_capacity(url: str, requests: int) -> dict[str, float]:
    """GET and SET per second one redis-server of this machine answers (redis-benchmark)."""
    address = urlsplit(url)
    run = subprocess.run(
        [
            *("redis-benchmark", "-h", str(address.hostname), "-p", str(address.port)),
            *("-t", "get,set", "-n", str(requests), "-c", "50", "-d", "200", "--csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rates: dict[str, float] = {}
    for line in run.stdout.splitlines()[1:]:
        fields = [f.strip('"') for f in line.split(",")]
        rates[fields[0].lower()] = float(fields[1])
    return rates


async def measure(c: Cluster, n: int, turns: int, idle_s: float) -> dict[str, Any]:
    speech = [speak_to_frames(text, c.workers[0].workdir) for text in SENTENCES]
    # one conversation through each node first: models loaded, phrases rendered; then
    # its statistics reported, so the idle window counts only the idle cluster
    await asyncio.gather(*(conversation(w, speech, 1, 0.0) for w in c.workers))
    await asyncio.sleep(SETTLE_S)
    quiet = await idle(c, idle_s)
    busy = await talk(c, n, speech, turns, quiet["routing_commands_per_s"])
    return {"idle": quiet, "talk": busy}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sizing", description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="2 people, one turn each")
    parser.add_argument("--people", type=int, default=None)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    args = parser.parse_args()
    people = args.people or (2 if args.quick else 4)
    turns = 1 if args.quick else 3
    ensure_binary()
    workdir = Path(tempfile.mkdtemp(prefix="bench-sizing-"))
    ai = AIEndpoint.start(args.rtt_ms, DELAYS)
    try:
        with cluster(ai, workdir) as c:
            measured = asyncio.run(measure(c, people, turns, 5.0 if args.quick else IDLE_S))
            capacity = redis_capacity(c.cache_url, 20_000 if args.quick else 200_000)
    finally:
        ai.stop()
    load = json.loads((HERE / "load.json").read_text())
    results: dict[str, Any] = {
        **stamp(),
        "rtt_ms": args.rtt_ms,
        "turns_per_person": turns,
        **measured,
        "redis_capacity_per_s": capacity,
    }
    results["fleet"] = fleet(results, load)
    publish("sizing", results, args.out, table=table, chart=None, quick=args.quick)


if __name__ == "__main__":
    main()
