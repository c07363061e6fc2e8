"""`make bench`: every figure side by side in one run; prints a table with each limit,
writes bench/results.json and bench/results.png.

    python -m bench [--rtt-ms 20] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from . import local, network, voice
from .provenance import stamp
from .readme import replace_section
from .report import chart, table
from .rig import start_rig
from .services import postgres, redis


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="round-trip time to inject")
    parser.add_argument("--quick", action="store_true", help="small n: a smoke run for the tests")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    quick = args.quick

    started = time.perf_counter()
    rig = start_rig(args.rtt_ms)
    try:
        results: dict[str, Any] = {**stamp(), "rtt_ms": args.rtt_ms}
        results["pooled_vs_fresh"] = asyncio.run(network.pooled_vs_fresh(rig, 5 if quick else 30))
        results["warm_first_request"] = asyncio.run(
            network.warm_first_request(rig, 3 if quick else 9)
        )
        call_ms = 50.0 if quick else 200.0
        results["parallel"] = asyncio.run(
            network.parallel(rig, [5] if quick else [5, 20], call_ms)
        ) + asyncio.run(network.parallel(rig, [5] if quick else [20], call_ms, http2=True))
        with redis() as redis_url:
            results["greeting_cache"] = asyncio.run(
                local.greeting_cache(rig, 100 if quick else 2000, 100, redis_url)
            )
        if redis_url is None:
            results.setdefault("notes", []).append(
                "greeting_cache: no redis-server, Redis left out"
            )
        with postgres() as pg_admin_dsn:
            batches, note = asyncio.run(local.memory_batch(rig, 20 if quick else 100, pg_admin_dsn))
        results["memory_batch"] = batches
        if note:
            results.setdefault("notes", []).append(note)
        results["pool_overhead"] = asyncio.run(network.pool_overhead(rig, 500 if quick else 20000))
        results["connection_reuse"] = asyncio.run(
            network.connection_reuse(rig, 50 if quick else 1000)
        )
        results["pool_rss_mb"] = local.pool_rss_mb(rig)
        results["voice_turn"] = asyncio.run(voice.voice_turn(rig, 1 if quick else 3))
    finally:
        rig.close()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, args.out / "results.png")
    text = table(results)
    print(text)
    if args.out.resolve() == Path(__file__).resolve().parent and not quick:
        replace_section("results", text)


if __name__ == "__main__":
    main()
