"""From what `make bench-sizing` and `make bench-load` measured to a fleet: how many of each
part 1,000 and 100,000 conversations need, and which limit binds first.

The measured figures are per turn and per conversation; the machine shapes below are the
assumptions, named in the table so a reader can redo the arithmetic for their own.
"""

from __future__ import annotations

import math
from typing import Any

from bench.provenance import stamp_line

FLEETS = (1_000, 100_000)
WORKER_CORES, WORKER_GB = 8, 32
NODE_CORES = 8
UTILISATION = 0.7  # of a node's CPU, and of a worker's memory, planned for
REDIS_SHARE = 0.5  # of what redis-benchmark measured, planned for
PG_MAX_CONNECTIONS = 100  # PostgreSQL's default
POOLER_HEADROOM = 2.0  # server connections per busy one, behind a transaction pooler
LATENCY_HOLDS = 1.25  # the reply's p95 within this of one person's


def conversations_per_core(load: dict[str, Any]) -> tuple[float, int, int]:
    """From bench-load's pooled rows: the most people one worker served while everyone was
    answered and the reply's p95 stayed within LATENCY_HOLDS of one person's; per core."""
    rows = load["agents"]["pooled"]
    alone = rows[0]["turn_p95_ms"]
    held = [
        r["n"]
        for r in rows
        if r["served"] == r["n"]
        and not r["turns_failed"]
        and r["turn_p95_ms"] <= LATENCY_HOLDS * alone
    ]
    cores = int(load["machine"].split(" cores")[0].rsplit(" ", 1)[1])
    most = max(held)
    return most / cores, most, cores


def fleet(results: dict[str, Any], load: dict[str, Any]) -> dict[str, Any]:
    idle, talk = results["idle"], results["talk"]
    n, turn = talk["people"], talk["per_turn"]
    pace = talk["turns"] / talk["conversation_s"]  # turns per second of one conversation
    per_core, knee_n, load_cores = conversations_per_core(load)
    pss = talk["job_pss_mb"]  # a job process holds one conversation
    # a worker machine also holds the worker itself and its prewarmed processes
    fixed = idle["workers_pss_mb"] / 2
    backends = talk["peak"]["pg_backends"] / n
    cache_capacity = REDIS_SHARE * min(results["redis_capacity_per_s"].values())
    per_machine_cpu = per_core * WORKER_CORES
    per_machine_memory = (WORKER_GB * 1024 * UTILISATION - fixed) / pss
    node_conversations = NODE_CORES * UTILISATION / talk["node_cores_per_conversation"]
    limits = {
        f"an {WORKER_CORES}-core worker machine, by CPU (the reply's latency)": per_machine_cpu,
        f"a {WORKER_GB} GB worker machine, by memory": per_machine_memory,
        f"PostgreSQL's {PG_MAX_CONNECTIONS} connections, without a pooler": PG_MAX_CONNECTIONS
        / backends,
        f"an {NODE_CORES}-core LiveKit node, by CPU": node_conversations,
        "one Redis for the cache": cache_capacity / (pace * turn["cache_commands"]),
        "one Redis for LiveKit's routing": cache_capacity
        / talk["routing_commands_per_conversation_s"],
    }
    sized = []
    for c in FLEETS:
        machines = math.ceil(c / min(per_machine_cpu, per_machine_memory))
        sized.append(
            {
                "conversations": c,
                "worker_machines": machines,
                "worker_cores": math.ceil(c / per_core),
                "worker_memory_gb": round((c * pss + machines * fixed) / 1024, 1),
                "livekit_nodes": math.ceil(c / node_conversations),
                "pg_transactions_per_s": round(c * pace * turn["pg_transactions"]),
                "pg_rows_written_per_s": round(c * pace * turn["pg_rows_written"]),
                "pg_direct_connections": math.ceil(c * backends),
                "pg_pooled_server_connections": max(
                    2, math.ceil(POOLER_HEADROOM * c * pace * turn["pg_busy_ms"] / 1000)
                ),
                "cache_ops_per_s": round(c * pace * turn["cache_commands"]),
                "cache_redis": math.ceil(c * pace * turn["cache_commands"] / cache_capacity),
                "routing_ops_per_s": round(c * talk["routing_commands_per_conversation_s"]),
                "ai_connections_per_s": round(c * pace * turn["ai_connections"], 1),
                "ai_requests_per_s": round(c * pace * sum(turn["ai_requests"].values())),
            }
        )
    return {
        "turns_per_minute": round(60 * pace, 2),
        "conversations_per_core": per_core,
        "knee": {"people": knee_n, "cores": load_cores, "commit": load["commit"]},
        "pss_mb_per_conversation": pss,
        "uss_mb_per_conversation": talk["job_uss_mb"],
        "pss_mb_per_worker": round(fixed, 1),
        "pg_backends_per_conversation": round(backends, 2),
        "limits": {name: round(at) for name, at in sorted(limits.items(), key=lambda x: x[1])},
        "sized": sized,
    }


def table(results: dict[str, Any]) -> str:
    talk, idle, f = results["talk"], results["idle"], results["fleet"]
    turn = talk["per_turn"]
    requests = ", ".join(f"{path} {k}" for path, k in sorted(turn["ai_requests"].items()))
    knee = f["knee"]
    answers = ", ".join(f"{k} {v:,.0f}/s" for k, v in results["redis_capacity_per_s"].items())
    lines = [
        f"{stamp_line(results)}; two LiveKit nodes, two workers, PostgreSQL, two Redis; "
        f"{talk['people']} people, {results['turns_per_person']} turns each "
        f"({talk['turns']} answered, {talk['turns_failed']} failed; "
        f"{f['turns_per_minute']} turns per conversation-minute)",
        "",
        "| measured | per turn | per conversation |",
        "|---|---|---|",
        f"| AI provider | {turn['ai_connections']} connections; requests: {requests} | |",
        f"| PostgreSQL | {turn['pg_transactions']} transactions, {turn['pg_rows_written']} rows "
        f"written, {turn['pg_busy_ms']} ms busy, {turn['pg_sessions']} sessions opened "
        f"| {f['pg_backends_per_conversation']} backends at peak |",
        f"| Redis (cache) | {turn['cache_commands']} commands, {turn['cache_connections']} "
        f"connections opened | |",
        f"| Redis (LiveKit's routing) | | {talk['routing_commands_per_conversation_s']} "
        f"commands/s (idle cluster: {idle['routing_commands_per_s']}/s) |",
        f"| worker memory | | PSS {f['pss_mb_per_conversation']} MB, USS "
        f"{f['uss_mb_per_conversation']} MB (its job process); each "
        f"worker {f['pss_mb_per_worker']} MB more with no conversation (itself and its "
        f"{idle['job_processes'] // 2} prewarmed processes) |",
        f"| worker CPU | | {talk['worker_cores_per_conversation']} cores while talking; "
        f"{f['conversations_per_core']:g} conversations per core while the latency holds "
        f"(bench-load, commit {knee['commit']}: {knee['people']} on {knee['cores']} cores) |",
        f"| LiveKit node CPU | | {talk['node_cores_per_conversation']} cores |",
        "",
        f"Redis here answers {answers} "
        f"(redis-benchmark, 50 clients, 200-byte values); planned at {REDIS_SHARE:.0%} of it.",
        "",
        "| conversations | worker machines (cores) | worker memory | LiveKit nodes "
        "| PostgreSQL tx/s (rows/s) | PostgreSQL connections: direct / behind a pooler "
        "| cache Redis ops/s (instances) | routing Redis ops/s | AI connections/s, requests/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in f["sized"]:
        lines.append(
            f"| {s['conversations']:,} | {s['worker_machines']:,} ({s['worker_cores']:,}) "
            f"| {s['worker_memory_gb']:,} GB | {s['livekit_nodes']:,} "
            f"| {s['pg_transactions_per_s']:,} ({s['pg_rows_written_per_s']:,}) "
            f"| {s['pg_direct_connections']:,} / {s['pg_pooled_server_connections']:,} "
            f"| {s['cache_ops_per_s']:,} ({s['cache_redis']}) | {s['routing_ops_per_s']:,} "
            f"| {s['ai_connections_per_s']:,}, {s['ai_requests_per_s']:,} |"
        )
    lines += [
        "",
        f"Machines: workers {WORKER_CORES} cores, {WORKER_GB} GB (memory planned at "
        f"{UTILISATION:.0%}); LiveKit nodes {NODE_CORES} cores at {UTILISATION:.0%}; a "
        f"transaction pooler keeps {POOLER_HEADROOM:g} server connections per busy one.",
        "",
        "| limit | reached at conversations |",
        "|---|---|",
        *(f"| {name} | {at:,} |" for name, at in f["limits"].items()),
    ]
    return "\n".join(lines)
