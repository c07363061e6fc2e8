"""`make bench-silence`: how often a person in a room hears the agent within 2 s of the end
of their speech, and the longest silence, while its providers and its machine falter.

A real LiveKit server, the worker as a process, people who speak espeak-ng sentences;
each fault is a case of its own with a fresh worker:

    normal        nothing wrong
    slow_model    the only model takes 2.5 s to its first token
    provider_down the OpenAI-compatible server is gone for 20 s (turns during the outage)
    stt_down      transcription answers 503
    tts_down      speech synthesis answers 503
    burst         four people join at the same moment, twice the job processes kept
                  ready (greeting counted): the burst that CPU-based load used to refuse

    python -m bench.silence [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.provenance import stamp, stamp_line
from bench.readme import replace_section
from room.livekit_server import LiveKitServer, ensure_binary
from testbed.audio_io import speak_to_frames
from testbed.openai_server import Fault, OpenAIServer, Rule
from testbed.person import Person
from testbed.worker import Worker, room_env
from tools.conversation import PHRASES

HEARD_WITHIN_S = 2.0
GIVE_UP_S = 15.0  # a turn still silent after this counts as silent for this long
KEY = "bench-key"


@dataclass
class Case:
    name: str
    waits: list[float] = field(default_factory=list)  # end of speech → first sound

    def report(self) -> dict[str, Any]:
        heard = [w for w in self.waits if w <= HEARD_WITHIN_S]
        return {
            "turns": len(self.waits),
            "heard_within_2s_pct": round(100 * len(heard) / len(self.waits), 1)
            if self.waits
            else None,
            "longest_silence_s": round(max(self.waits), 2) if self.waits else None,
            "median_wait_s": round(sorted(self.waits)[len(self.waits) // 2], 2)
            if self.waits
            else None,
        }


async def turn(person: Person, server: OpenAIServer, text: str, workdir: Path) -> float:
    server.transcripts.append(text.lower().rstrip("?."))
    ended = await person.say_and_wait(speak_to_frames(text, workdir))
    deadline = time.perf_counter() + GIVE_UP_S
    while person.first_sound_after(ended) is None and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    heard = person.first_sound_after(ended)
    await asyncio.sleep(3.0)  # let the reply play out before the next turn
    return GIVE_UP_S if heard is None else heard - ended


async def greeted_within(person: Person, joined: float) -> float:
    deadline = time.perf_counter() + GIVE_UP_S
    while not person.heard.sound_starts and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    return person.heard.sound_starts[0] - joined if person.heard.sound_starts else GIVE_UP_S


async def conversation(
    worker: Worker,
    server: OpenAIServer,
    workdir: Path,
    turns: int,
    during: Callable[[int], Awaitable[None]] | None = None,
) -> list[float]:
    """One person, ``turns`` questions; ``during(n)`` runs before question n."""
    waits = []
    async with worker.person(f"p-{uuid.uuid4().hex[:6]}", f"room-{uuid.uuid4().hex[:8]}") as p:
        await greeted_within(p, time.perf_counter())
        while len(list(workdir.glob("phrases/*/*.wav"))) < len(PHRASES):
            await asyncio.sleep(0.1)  # rendered once per machine and voice, at the first job
        for n in range(turns):
            if during is not None:
                await during(n)
            waits.append(await turn(p, server, f"Question number {n}?", workdir))
    return waits


async def run_case(
    name: str, livekit: LiveKitServer, workdir: Path, turns: int, **env: str
) -> Case:
    case = Case(name)
    workdir.mkdir(parents=True, exist_ok=True)
    server = OpenAIServer().start()
    worker = Worker(livekit, workdir, **room_env(server.base_url, OPENAI_API_KEY=KEY, **env))
    try:
        await asyncio.to_thread(worker.start)
        if name == "slow_model":
            server.script(Rule(text="Here you are.", fault=Fault(delay_s=2.5), times=None))
        if name == "stt_down":
            server.script(Rule(path="/audio/transcriptions", fault=Fault(status=503), times=None))
        if name == "tts_down":

            async def break_tts(n: int) -> None:
                if n == 0:
                    server.script(Rule(path="/audio/speech", fault=Fault(status=503), times=None))

            case.waits = await conversation(worker, server, workdir, turns, break_tts)
            return case
        if name == "provider_down":
            port = server.port
            state = {"server": server}

            async def outage(n: int) -> None:
                if n == 0:
                    state["server"].stop()
                    state["down_at"] = time.perf_counter()  # type: ignore[assignment]
                if n == turns - 1:  # the last question is asked after the outage
                    left = 20.0 - (time.perf_counter() - state["down_at"])  # type: ignore[operator]
                    await asyncio.sleep(max(left, 0.0))
                    state["server"] = OpenAIServer(port=port).start()
                    await asyncio.sleep(1.0)

            try:
                case.waits = await conversation(worker, server, workdir, turns, outage)
            finally:
                server = state["server"]
            return case
        if name == "burst":
            people = [
                worker.person(f"b-{i}-{uuid.uuid4().hex[:4]}", f"room-{uuid.uuid4().hex[:8]}")
                for i in range(4)
            ]
            joined = time.perf_counter()
            await asyncio.gather(*(p.join() for p in people))
            case.waits = list(await asyncio.gather(*(greeted_within(p, joined) for p in people)))
            await asyncio.gather(*(p.leave() for p in people))
            return case
        case.waits = await conversation(worker, server, workdir, turns)
        return case
    finally:
        await asyncio.to_thread(worker.terminate)
        server.stop()


async def main_async(out: Path, quick: bool) -> dict[str, Any]:
    turns = 2 if quick else 4
    workdir = Path(tempfile.mkdtemp(prefix="bench-silence-"))
    results: dict[str, Any] = {
        **stamp(),
        "heard_within_s": HEARD_WITHIN_S,
        "give_up_s": GIVE_UP_S,
        "cases": {},
    }
    with LiveKitServer(ensure_binary()) as livekit:
        for name, env in (
            ("normal", {}),
            ("slow_model", {}),
            ("provider_down", {"HEALTH_TICK_S": "1", "HEALTH_PROBE_S": "5"}),
            ("stt_down", {}),
            ("tts_down", {}),
            ("burst", {"IDLE_PROCESSES": "2"}),
        ):
            # a machine of its own per case: its memory, and its phrases rendered at its start
            case = await run_case(name, livekit, workdir / name, turns, **env)
            results["cases"][name] = case.report()
            print(f"{name:14} {results['cases'][name]}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "silence.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{stamp_line(results)}",
        "",
        "| case | turns | heard within 2 s | longest silence | median wait |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["cases"].items():
        lines.append(
            f"| {name} | {r['turns']} | {r['heard_within_2s_pct']} % | "
            f"{r['longest_silence_s']} s | {r['median_wait_s']} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.silence", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    text = table(asyncio.run(main_async(args.out, args.quick)))
    print(text)
    if args.out.resolve() == Path(__file__).resolve().parent and not args.quick:
        replace_section("silence", text)


if __name__ == "__main__":
    main()
