"""`make bench-turns`: how soon the agent answers once a person has finished, and whether
it waits for them to finish, beside two peers, in one run on the same servers.

    this      this project's worker (agent.py): streaming STT, end of turn from the words,
              the reply begun before the turn is committed
    livekit   bench/default_agent.py: an AgentSession given only STT, LLM and TTS; livekit's
              bundled VAD and audio end-of-turn model decide
    vad-only  bench/plain_agent.py: the VAD's silence decides (what this project did before)

A real LiveKit server, one worker at a time, and the AI provider in a process of its own
(bench/ai_endpoint.py: TLS behind the latency proxy, each endpoint's own delay, and a real
recognizer, pocketsphinx over the corpus, behind both transcription endpoints, so a sentence
cut by a pause is heard cut). People speak the corpus in espeak-ng: complete questions,
sentences with a 0.5, 0.8 and 1.2 s pause after a word that cannot end them, sentences that
could end at their pause, and short answers. N people at once (N = 1 and 8): they join half
a second apart, and once all N have been greeted each begins to speak, still half a second
apart, each the whole corpus from a place of their own (not N people saying one sentence at
one moment), so that every turn measured is one of N conversations under way (eight joins
at once are the test's own WebRTC work and livekit-server's, on the same two cores; what a
join costs the person joining is the row's greeting time).

Per agent and utterance kind: end of speech → first reply sound p50/p95; utterances split
(the agent answered in the pause); talk-over (the agent began while the person spoke); the
conversation's LLM calls per utterance (a discarded preemptive reply is one too many); the
worker's CPU and memory (USS, PSS) per conversation; a returning person's first greeting
sound, from asking for a room: a token that sends the agent (livekit's starter), and for
this project also its room page, which gives out a room it keeps ready with the agent in it.

    python -m bench.turns [--quick] [--out DIR] [--rtt-ms 20] [--people 1,8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit import api

from bench.ai_endpoint import AIEndpoint
from bench.figures import ms, percentile, ratio
from bench.options import people_options
from bench.process_tree import (
    ProcessTree,
    TreeSampler,
    busy_pct,
    machine_cpu_times,
    stolen_pct,
)
from bench.provenance import stamp
from bench.readme import publish
from bench.turns_report import chart, table
from room.livekit_server import API_KEY, API_SECRET, LiveKitServer, ensure_binary
from room.ready_room import ReadyRoom
from room.rooms import RoomConfig
from testbed.audio_io import FRAME_MS, silence, speak_to_frames
from testbed.person import Person
from testbed.worker import Worker
from tools.memory.stores.sqlite import SCHEMA
from tools.worker import settle_heap

HERE = Path(__file__).resolve().parent
# the sampler's smaps reads cost CPU the people and the agent share: CPU times add up
# between samples, memory peaks move slowly
SAMPLE_EVERY_S = 2.0
# a provider's time to first byte, per endpoint; the realtime endpoint's is from the end of
# an utterance to its transcript (its words were heard as they were spoken)
DELAYS = {
    "/audio/transcriptions": 0.20,
    "/realtime": 0.10,
    "/chat/completions": 0.15,
    "/audio/speech": 0.10,
}
SPEECH_S_PER_CHAR = 0.06  # the agent's speech lasts as long as a voice would take
GIVE_UP_S = 10.0
# a returning person's, after the first: one visit in five or so meets a busy moment of the
# machine (0.5 s against 0.25 s), which moved a median of four by half
VISITS = 8
# eight people joining at once wait for job processes to start on two cores: a late
# greeting still starts a conversation, which the N = 8 row must hold
GREETING_GIVE_UP_S = 30.0
KEY = "bench-turns-key"
# eight people share this process's event loop: what their microphones keep queued must
# outlast its stalls, or the gaps would be heard as pauses mid-sentence
MICROPHONE_LEAD_S = 0.5
# the people and the provider stand for machines elsewhere, but share these two cores: the
# agents under test run below them, so a busy agent cannot starve a person's microphone into
# a pause nobody made (cut into pieces by the provider, each piece answered: more work for
# the same cores, a run that feeds on itself)
AGENT_NICE = 5
AGENTS = {
    "this": HERE.parent / "agent.py",
    "livekit": HERE / "default_agent.py",
    "vad-only": HERE / "plain_agent.py",
}


@dataclass(frozen=True)
class Utterance:
    kind: str
    parts: tuple[str | float, ...]  # sentences, and seconds of pause between them


CORPUS = (
    Utterance("complete", ("What is the weather like today",)),
    Utterance(
        "paused 0.5 s, cannot end", ("I would like to book a table for", 0.5, "two people tonight")
    ),
    Utterance("short answer", ("yes",)),
    Utterance("paused 0.8 s, cannot end", ("Send a message to", 0.8, "my brother")),
    Utterance("could end at the pause", ("Set an alarm", 0.8, "for seven tomorrow morning")),
    Utterance("complete", ("What time does the store open",)),
    Utterance("paused 1.2 s, cannot end", ("I want to go to", 1.2, "the beach this weekend")),
    Utterance("short answer", ("no",)),
    Utterance("complete", ("Can you tell me a joke",)),
    Utterance("could end at the pause", ("Order a pizza", 0.8, "with extra cheese")),
    Utterance("short answer", ("yeah",)),
)
KINDS = list(dict.fromkeys(u.kind for u in CORPUS))


def in_turn(items: list[Any], person: int) -> list[Any]:
    """What person ``person`` of a row says, in their order: the corpus begun at a place of
    its own. Conversations under way are not in step: N people saying the same sentence
    within N half-seconds of one another would make every agent's most expensive turn (a
    reply cut, then the whole sentence answered) fall on the same two cores at once."""
    if not items:
        return items
    start = person % len(items)
    return items[start:] + items[:start]


def sentences() -> list[str]:
    """What the recognizer can hear: every sentence whole, and each part a pause cuts off."""
    heard: list[str] = []
    for utterance in CORPUS:
        words = [p for p in utterance.parts if isinstance(p, str)]
        heard += [*words, " ".join(words)]
    return heard


@dataclass
class Spoken:
    frames: list[Any]
    # (start, end) of each spoken part, in seconds from the first frame
    parts: list[tuple[float, float]]


def render(utterance: Utterance, workdir: Path) -> Spoken:
    frames: list[Any] = []
    parts = []
    for part in utterance.parts:
        start = len(frames) * FRAME_MS / 1000
        if isinstance(part, str):
            frames += speak_to_frames(part, workdir)
            parts.append((start, len(frames) * FRAME_MS / 1000))
        else:
            frames += [silence() for _ in range(round(part * 1000 / FRAME_MS))]
    return Spoken(frames, parts)


@dataclass
class Turn:
    kind: str
    wait_s: float | None  # end of speech → first reply sound; None: nothing within GIVE_UP_S
    split: bool  # a reply began in a pause, before the person had finished
    talk_over: bool  # a reply began while the person was speaking
    llm_calls: int | None = None  # replies asked of the model, discarded ones included


@dataclass
class Visit:
    turns: list[Turn] = field(default_factory=list)
    greeting_s: float | None = None
    underruns: int = 0  # gaps this process's stalls let into the person's speech


class Gathering:
    """Until everyone of a row is in: each person says when they have been greeted (or were
    not, and are leaving), and nobody begins to speak before all of them have."""

    def __init__(self, people: int) -> None:
        self._waiting_for = people
        self._everyone_in = asyncio.Event()
        if people <= 0:
            self._everyone_in.set()

    def arrived(self) -> None:
        self._waiting_for -= 1
        if self._waiting_for <= 0:
            self._everyone_in.set()

    async def everyone_in(self) -> None:
        await self._everyone_in.wait()


async def greeted(person: Person, joined: float) -> float | None:
    heard = await person.first_sound_within(joined, GREETING_GIVE_UP_S)
    return None if heard is None else heard - joined


async def talk(
    worker: Worker,
    identity: str,
    speech: list[Spoken],
    delay_s: float,
    gathering: Gathering,
    replies: Callable[[], int] | None = None,
    person_in_row: int = 0,
) -> Visit:
    """Join after ``delay_s``, and once ``gathering`` has everyone, speak after ``delay_s``
    more, the corpus in the order of ``person_in_row`` (:func:`in_turn`). ``replies``: the
    model's reply calls so far, read around each utterance (one person talking alone, so
    every call is theirs)."""
    visit = Visit()
    arrived = False
    try:
        await asyncio.sleep(delay_s)
        person = worker.person(identity, f"turns-{uuid.uuid4().hex[:8]}", lead_s=MICROPHONE_LEAD_S)
        joined = time.perf_counter()
        async with person:
            visit.greeting_s = await greeted(person, joined)
            if visit.greeting_s is not None:
                await person.until_quiet()
            arrived = True
            gathering.arrived()
            if visit.greeting_s is None:
                return visit
            await gathering.everyone_in()
            await asyncio.sleep(delay_s)
            said = in_turn(list(zip(CORPUS, speech, strict=True)), person_in_row)
            await converse(person, visit, said, replies)
    finally:
        if not arrived:  # a person who failed to join must not hold the others back
            gathering.arrived()
    return visit


async def converse(
    person: Person,
    visit: Visit,
    said: list[tuple[Utterance, Spoken]],
    replies: Callable[[], int] | None,
) -> None:
    for utterance, spoken in said:
        await asyncio.sleep(0.8)  # a person's pause before they speak
        asked = await asyncio.to_thread(replies) if replies else 0
        ended = await person.say_and_wait(spoken.frames)
        began = ended - len(spoken.frames) * FRAME_MS / 1000
        heard = await person.first_sound_within(ended, GIVE_UP_S)
        starts = [t - began for t in person.heard.sound_starts if began < t <= ended]
        first_end = spoken.parts[0][1]
        visit.turns.append(
            Turn(
                kind=utterance.kind,
                wait_s=None if heard is None else heard - ended,
                split=any(first_end < t for t in starts),
                talk_over=any(a <= t <= b for t in starts for a, b in spoken.parts),
            )
        )
        await person.until_quiet()
        if replies:
            visit.turns[-1].llm_calls = await asyncio.to_thread(replies) - asked
    visit.underruns = person.underruns


async def greeting_only(
    worker: Worker, identity: str, page: ReadyRoom | None = None
) -> float | None:
    """From asking for a room to the first greeting sound. ``page``: the room comes from the
    room page (room/web.py), which gives out a room it keeps ready with the agent in it;
    without it the token sends the agent when the person's connection creates the room, as
    livekit's starter's token server does."""
    if page is None:
        joined = time.perf_counter()
        person = worker.person(identity, f"turns-{uuid.uuid4().hex[:8]}")
    else:
        # the page readies the next room as it gives one out: a person arriving after the
        # last one was greeted finds it ready
        await page.wait_ready(GREETING_GIVE_UP_S)
        joined = time.perf_counter()
        given = await page.take(identity)
        person = Person(given["url"], identity, given["room"], access_token=given["token"])
    async with person:
        heard = await greeted(person, joined)
        await person.until_quiet()
    return heard


async def returning_greeting(worker: Worker, page: ReadyRoom | None = None) -> float | None:
    """A returning person's greeting, the median of the visits after the first (on which
    this project composes and caches it)."""
    visits = [await greeting_only(worker, "returning", page) for _ in range(1 + VISITS)]
    heard = [v for v in visits[1:] if v is not None]
    return percentile(heard, 0.5) if heard else None


async def measure(worker: Worker, ai: AIEndpoint, n: int, speech: list[Spoken]) -> dict[str, Any]:
    assert worker.process is not None
    tree = ProcessTree(worker.process.pid)
    tree.sample()
    idle_uss, idle_pss = tree.peak_uss_mb, tree.peak_pss_mb

    def replies() -> int:
        return int(ai.counters()["chat"].get("reply", 0))

    replies_before = replies()
    lags_before = len(ai.counters()["transcript_lags_s"])
    # what this process holds already lives as long as the run: a full collection of it,
    # seconds long on a loaded machine, stalled the people's audio mid-sentence
    settle_heap()
    started, machine_before = time.perf_counter(), machine_cpu_times()
    alone = replies if n == 1 else None
    gathering = Gathering(n)
    with TreeSampler(worker.process.pid, every_s=SAMPLE_EVERY_S) as sampler:
        visits = await asyncio.gather(
            *(
                talk(worker, f"turns-{uuid.uuid4().hex[:6]}", speech, 0.5 * i, gathering, alone, i)
                for i in range(n)
            )
        )
    tree = sampler.tree
    wall = time.perf_counter() - started
    machine_after = machine_cpu_times()
    turns = [t for v in visits for t in v.turns]
    asked = replies() - replies_before
    lags = ai.counters()["transcript_lags_s"][lags_before:]
    by_kind = {}
    for kind in KINDS:
        of_kind = [t for t in turns if t.kind == kind]
        waits = [t.wait_s for t in of_kind if t.wait_s is not None]
        by_kind[kind] = {
            "turns": len(of_kind),
            "p50_ms": ms(percentile(waits, 0.5)),
            "p95_ms": ms(percentile(waits, 0.95)),
            "split": sum(t.split for t in of_kind),
            "talk_over": sum(t.talk_over for t in of_kind),
            "unanswered": sum(t.wait_s is None for t in of_kind),
            "llm_calls": (sum(t.llm_calls or 0 for t in of_kind) if n == 1 and of_kind else None),
        }
    greetings = [v.greeting_s for v in visits if v.greeting_s is not None]
    return {
        "n": n,
        "greeted": len(greetings),
        # N people joining at once: from joining to the agent's first sound
        "greeting_p50_ms": ms(percentile(greetings, 0.5)),
        "greeting_p95_ms": ms(percentile(greetings, 0.95)),
        "turns": len(turns),
        "by_kind": by_kind,
        "llm_calls_per_turn": round(asked / len(turns), 2) if turns else None,
        # the harness's own health: a gap is a pause the agent heard that nobody made
        "microphone_gaps": sum(v.underruns for v in visits),
        # ...and the provider's stand-in's: its recognizer shares the machine with the agents
        "transcript_lag_p95_ms": ms(percentile(lags, 0.95)),
        # ...and the machine's: CPU time the VM's host gave to others
        "host_stole_pct": stolen_pct(machine_before, machine_after),
        # ...and how full the machine was: everything above, the agent's included
        "machine_busy_pct": busy_pct(machine_before, machine_after),
        "cpu_s_per_conversation_minute": round(tree.cpu_s_used() / n / (wall / 60), 1),
        "uss_mb_per_conversation": round((tree.peak_uss_mb - idle_uss) / n, 1),
        "pss_mb_per_conversation": round((tree.peak_pss_mb - idle_pss) / n, 1),
    }


def seed_memory(workdir: Path, identity: str) -> None:
    """A returning person, as far as this project's agent knows: a name it was told."""
    with sqlite3.connect(workdir / "memory.db") as db:
        db.executescript(SCHEMA)
        now = time.time()
        db.execute(
            "INSERT OR REPLACE INTO memories VALUES (?, 'FACT', 'name', 'Robin', ?, ?)",
            (identity, now, now),
        )


def agent_worker(name: str, livekit: LiveKitServer, workdir: Path, env: dict[str, str]) -> Worker:
    """The worker of agent ``name``, below the people and the provider in CPU priority."""
    if name != "this":
        # livekit's CPU-based load refuses rooms on 2 cores (see bench-load); here every
        # agent must hear every person
        env = {**env, "LOAD_THRESHOLD": "100"}
    return Worker(livekit, workdir, program=AGENTS[name], nice=AGENT_NICE, **env)


async def run_agent(
    name: str,
    livekit: LiveKitServer,
    ai: AIEndpoint,
    people: list[int],
    speech: list[Spoken],
    workdir: Path,
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    worker = agent_worker(name, livekit, workdir, {**ai.env(), "OPENAI_API_KEY": KEY})
    result: dict[str, Any] = {"rows": []}
    try:
        await asyncio.to_thread(worker.start)
        # a returning person's first words, once they are remembered
        seed_memory(workdir, "returning")
        result["returning_greeting_ms"] = ms(await returning_greeting(worker))
        if name == "this":  # the peers greet whoever is in when they arrive: no page for them
            config = RoomConfig(livekit.url, API_KEY, API_SECRET, agent_name=worker.agent_name)
            async with api.LiveKitAPI(livekit.http_url, API_KEY, API_SECRET) as lk:
                page = ReadyRoom(config, lk)
                page.start()
                try:
                    result["returning_greeting_from_page_ms"] = ms(
                        await returning_greeting(worker, page)
                    )
                finally:
                    await page.aclose()
        result["new_person_greeting_ms"] = ms(await greeting_only(worker, "newcomer"))
        for n in people:
            # a row is its own N conversations: the last row's, still closing, would take
            # places of this one's at a worker with a capacity
            await worker.until_idle()
            row = await measure(worker, ai, n, speech)
            print(f"{name:8} {json.dumps(row)}", flush=True)
            result["rows"].append(row)
    finally:
        await asyncio.to_thread(worker.terminate)
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    people = [int(n) for n in args.people.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-turns-"))
    speech = [render(u, workdir) for u in CORPUS]
    results: dict[str, Any] = {
        **stamp(),
        "rtt_ms": args.rtt_ms,
        "agent_nice": AGENT_NICE,
        "provider_delays_ms": {path: round(s * 1000) for path, s in DELAYS.items()},
        "agents": {},
    }
    ai = AIEndpoint.start(
        args.rtt_ms, DELAYS, corpus=sentences(), speech_s_per_char=SPEECH_S_PER_CHAR
    )
    try:
        with LiveKitServer(ensure_binary()) as livekit:
            for name in AGENTS:
                results["agents"][name] = await run_agent(
                    name, livekit, ai, people, speech, workdir / name
                )
    finally:
        ai.stop()
    this, peers = results["agents"]["this"], results["agents"]
    first = {name: a["rows"][0]["by_kind"]["complete"]["p50_ms"] for name, a in peers.items()}
    results["goals"] = {
        "complete_p50_vs_vad_only": ratio(first["this"], first["vad-only"], 2),
        "complete_p50_vs_livekit": ratio(first["this"], first["livekit"], 2),
        "returning_greeting_vs_vad_only": ratio(
            this["returning_greeting_ms"], peers["vad-only"]["returning_greeting_ms"], 2
        ),
        "returning_greeting_from_page_vs_vad_only": ratio(
            this["returning_greeting_from_page_ms"], peers["vad-only"]["returning_greeting_ms"], 2
        ),
    }
    if len(this["rows"]) > 1:
        p95 = [max(v["p95_ms"] or 0 for v in row["by_kind"].values()) for row in this["rows"]]
        results["goals"]["p95_at_most_people_vs_one"] = ratio(p95[-1], p95[0], 2)
    return results


def main() -> None:
    args = people_options("bench.turns", __doc__, quick="1", full="1,8")
    results = asyncio.run(main_async(args))
    publish("turns", results, args.out, table=table, chart=chart, quick=args.quick)


if __name__ == "__main__":
    main()
