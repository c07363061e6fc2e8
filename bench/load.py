"""`make bench-load`: how many conversations one worker holds, beside a plain agent.

A real LiveKit server (dev mode), one worker, and the AI provider in a process of its own
(the OpenAI-compatible test server over TLS behind the latency proxy, with each endpoint's
own delay before it answers: ``DELAYS``). N people join N rooms at once (0.3 s apart), each
speaking espeak-ng sentences with pauses, and the same N for each agent:

    pooled   this project's worker (agent.py): the pool, memory, cached greetings
    plain    bench/plain_agent.py, written as livekit's starter writes it: plugins that own
             their clients, no pool, no memory, no cache

Per N: end of speech → first reply sound p50/p95 as the person hears it, and apart from it
the silence the VAD and endpointing wait for by design (until the agent's state turns
"thinking") and the reply after that; join → first greeting sound; turns failed (silent
for 15 s); rooms the worker refused; job processes; the worker tree's RSS (total, and
unique: USS); its CPU (% of one core); TCP connections opened to the AI provider per turn.

    python -m bench.load [--quick] [--out DIR] [--rtt-ms 20] [--people 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.ai_endpoint import AIEndpoint
from bench.figures import ms, percentile, ratio
from bench.options import people_options
from bench.process_tree import TreeSampler
from bench.provenance import stamp, stamp_line
from bench.readme import publish
from room.livekit_server import LiveKitServer, ensure_binary
from testbed.audio_io import speak_to_frames
from testbed.worker import Worker
from tools.worker import settle_heap

HERE = Path(__file__).resolve().parent
# the sampler's smaps reads cost CPU the people and the agent share: CPU times add up
# between samples, memory peaks move slowly
SAMPLE_EVERY_S = 2.0
# a provider's time to first byte, per endpoint
DELAYS = {"/audio/transcriptions": 0.20, "/chat/completions": 0.15, "/audio/speech": 0.10}
SENTENCES = (
    "What is the weather like today?",
    "Tell me something nice about the sea.",
    "Thank you, that is all for now.",
)
GIVE_UP_S = 15.0
KNEE_S = 1.0
KEY = "bench-load-key"
AGENTS = {"pooled": HERE.parent / "agent.py", "plain": HERE / "plain_agent.py"}


@dataclass
class Heard:
    greeting_s: float | None = None
    waits: list[float] = field(default_factory=list)  # end of speech → first reply sound
    detected: list[float] = field(default_factory=list)  # end of speech → "thinking"
    failed: int = 0
    served: bool = False


async def conversation(
    worker: Worker, speech: list[list[Any]], turns: int, delay_s: float
) -> Heard:
    await asyncio.sleep(delay_s)
    result = Heard()
    person = worker.person(f"p-{uuid.uuid4().hex[:6]}", f"load-{uuid.uuid4().hex[:8]}")
    joined = time.perf_counter()
    async with person:
        greeted = await person.first_sound_within(joined, GIVE_UP_S)
        result.served = person.agent_identity is not None
        if greeted is None:
            return result  # refused (no agent) or a silent greeting: no turns to measure
        result.greeting_s = greeted - joined
        await person.until_quiet(limit_s=12.0)
        for n in range(turns):
            await asyncio.sleep(random.uniform(0.4, 1.2))  # a person's pause before speaking
            ended = await person.say_and_wait(speech[n % len(speech)])
            heard = await person.first_sound_within(ended, GIVE_UP_S)
            if heard is None:
                result.failed += 1
                continue
            result.waits.append(heard - ended)
            thinking = next(
                (t for state, t in person.agent_state_at if state == "thinking" and t > ended),
                None,
            )
            if thinking is not None and thinking < heard:
                result.detected.append(thinking - ended)
            await person.until_quiet(limit_s=12.0)
    return result


async def measure(
    worker: Worker, ai: AIEndpoint, n: int, speech: list[list[Any]], turns: int
) -> dict[str, Any]:
    assert worker.process is not None
    before = ai.counters()["connections"]
    settle_heap()  # a full collection of this process mid-run stalls the people's audio
    started = time.perf_counter()
    with TreeSampler(worker.process.pid, every_s=SAMPLE_EVERY_S) as sampler:
        people = await asyncio.gather(
            *(conversation(worker, speech, turns, 0.3 * i) for i in range(n))
        )
    tree = sampler.tree
    wall = time.perf_counter() - started
    opened = ai.counters()["connections"] - before
    waits = [w for p in people for w in p.waits]
    detected = [d for p in people for d in p.detected]
    after_turn = [w - d for p in people for w, d in zip(p.waits, p.detected, strict=False)]
    greetings = [p.greeting_s for p in people if p.greeting_s is not None]
    turns_done = len(waits)
    return {
        "n": n,
        "served": sum(p.served for p in people),
        "refused": sum(not p.served for p in people),
        "turns": turns_done,
        "turns_failed": sum(p.failed for p in people),
        "turn_p50_ms": ms(percentile(waits, 0.5)),
        "turn_p95_ms": ms(percentile(waits, 0.95)),
        "end_of_turn_p50_ms": ms(percentile(detected, 0.5)),
        "reply_after_turn_p50_ms": ms(percentile(after_turn, 0.5)),
        "reply_after_turn_p95_ms": ms(percentile(after_turn, 0.95)),
        "greeting_p50_ms": ms(percentile(greetings, 0.5)),
        "greeting_p95_ms": ms(percentile(greetings, 0.95)),
        "job_processes": tree.peak_processes,
        "rss_total_mb": round(tree.peak_rss_mb, 1),
        "rss_unique_mb": round(tree.peak_uss_mb, 1),
        "cpu_pct": round(tree.cpu_pct(wall), 1),
        "connections_per_turn": round(opened / turns_done, 2) if turns_done else None,
    }


async def run_agent(
    name: str,
    livekit: LiveKitServer,
    ai: AIEndpoint,
    people: list[int],
    speech: list[list[Any]],
    turns: int,
    workdir: Path,
) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**ai.env(), "OPENAI_API_KEY": KEY}
    worker = Worker(livekit, workdir, program=AGENTS[name], **env)
    rows = []
    try:
        await asyncio.to_thread(worker.start)
        # one conversation first: models loaded, phrases rendered, processes warm
        await conversation(worker, speech, 1, 0.0)
        for n in people:
            # a row is its own N conversations: the last row's, still closing, would take
            # places of this one's at a worker with a capacity
            await worker.until_idle()
            row = await measure(worker, ai, n, speech, turns)
            print(f"{name:7} {json.dumps(row)}", flush=True)
            rows.append(row)
    finally:
        await asyncio.to_thread(worker.terminate)
    return rows


def knee(rows: list[dict[str, Any]]) -> int | None:
    """The first N where the reply's p95 after the end of the turn passes 1 s, or where the
    worker refused or failed someone."""
    for row in rows:
        p95 = row["reply_after_turn_p95_ms"]
        if row["refused"] or row["turns_failed"] or p95 is None or p95 > KNEE_S * 1000:
            return int(row["n"])
    return None


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    people = [int(n) for n in args.people.split(",")]
    turns = 1 if args.quick else 3
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    speech = [speak_to_frames(text, workdir) for text in SENTENCES]
    results: dict[str, Any] = {
        **stamp(),
        "rtt_ms": args.rtt_ms,
        "provider_delays_ms": {path: round(s * 1000) for path, s in DELAYS.items()},
        "turns_per_person": turns,
        "agents": {},
    }
    ai = AIEndpoint.start(args.rtt_ms, DELAYS)
    try:
        with LiveKitServer(ensure_binary()) as livekit:
            for name in AGENTS:
                results["agents"][name] = await run_agent(
                    name, livekit, ai, people, speech, turns, workdir / name
                )
    finally:
        ai.stop()
    pooled, plain = results["agents"]["pooled"], results["agents"]["plain"]
    results["ratios"] = [
        {
            "n": a["n"],
            "turn_p50": ratio(a["turn_p50_ms"], b["turn_p50_ms"]),
            "turn_p95": ratio(a["turn_p95_ms"], b["turn_p95_ms"]),
            "after_turn_p95": ratio(a["reply_after_turn_p95_ms"], b["reply_after_turn_p95_ms"]),
            "connections_per_turn": ratio(a["connections_per_turn"], b["connections_per_turn"]),
        }
        for a, b in zip(pooled, plain, strict=True)
    ]
    results["knee"] = {"pooled": knee(pooled), "plain": knee(plain)}
    return results


def table(results: dict[str, Any]) -> str:
    delays = ", ".join(f"{p} {d} ms" for p, d in results["provider_delays_ms"].items())
    lines = [
        f"{stamp_line(results)}; "
        f"RTT {results['rtt_ms']:g} ms; provider delays {delays}; "
        f"{results['turns_per_person']} turns per person",
        "",
        "| N | agent | served | reply p50 / p95 | of which end of turn (p50) | after it p50 / p95 "
        "| greeting p50 / p95 | failed | job processes | RSS total / unique | CPU "
        "| connections per turn |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results["agents"].items():
        for r in rows:
            lines.append(
                f"| {r['n']} | {name} | {r['served']}/{r['n']} | "
                f"{r['turn_p50_ms']} / {r['turn_p95_ms']} ms | {r['end_of_turn_p50_ms']} ms | "
                f"{r['reply_after_turn_p50_ms']} / {r['reply_after_turn_p95_ms']} ms | "
                f"{r['greeting_p50_ms']} / {r['greeting_p95_ms']} ms | {r['turns_failed']} | "
                f"{r['job_processes']} | {r['rss_total_mb']} / {r['rss_unique_mb']} MB | "
                f"{r['cpu_pct']} % | {r['connections_per_turn']} |"
            )
    lines += [
        "",
        "| N | pooled/plain reply p50 | p95 | p95 after the end of turn | connections per turn |",
        "|---|---|---|---|---|",
    ]
    for r in results["ratios"]:
        lines.append(
            f"| {r['n']} | {r['turn_p50']} | {r['turn_p95']} | {r['after_turn_p95']} | "
            f"{r['connections_per_turn']} |"
        )
    knees = results["knee"]
    lines += [
        "",
        "The knee (the reply's p95 after the end of the turn past 1 s, or a person refused or "
        f"unanswered): pooled at N = "
        f"{knees['pooled'] or 'none measured'}, plain at N = {knees['plain'] or 'none measured'}.",
    ]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, memory) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in results["agents"].items():
        ns = [r["n"] for r in rows]
        latency.plot(ns, [r["turn_p95_ms"] for r in rows], marker="o", label=f"{name} p95")
        latency.plot(ns, [r["turn_p50_ms"] for r in rows], marker=".", ls="--", label=f"{name} p50")
        memory.plot(ns, [r["rss_total_mb"] for r in rows], marker="o", label=f"{name} total")
        memory.plot(
            ns, [r["rss_unique_mb"] for r in rows], marker=".", ls="--", label=f"{name} USS"
        )
    latency.axhline(KNEE_S * 1000, color="grey", lw=0.8)
    latency.set(xlabel="people talking at once", ylabel="end of speech → reply (ms)")
    memory.set(xlabel="people talking at once", ylabel="worker + jobs RSS (MB)")
    for axes in (latency, memory):
        axes.set_xscale("log", base=2)
        axes.legend(fontsize=8)
    figure.suptitle(f"one worker, pooled vs plain (commit {results['commit']})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    args = people_options("bench.load", __doc__, quick="1,2", full="1,2,4,8,16")
    results = asyncio.run(main_async(args))
    publish("load", results, args.out, table=table, chart=chart, quick=args.quick)


if __name__ == "__main__":
    main()
