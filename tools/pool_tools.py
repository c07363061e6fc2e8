"""The pool as the LLM sees it: compact, readable, with no secret in it."""

from __future__ import annotations

import json
from typing import Any

from pool import ConnectionPool, redact

from .outbox import Outbox


def stats_summary(pool: ConnectionPool) -> dict[str, Any]:
    """The fields worth reading aloud, per resource that has been used or created."""
    stats = pool.stats()
    resources: dict[str, Any] = {}
    for name, entry in stats["resources"].items():
        if entry["client"] == "not created" and entry["requests"] == 0:
            continue
        latency = entry["latency_ms"] or {}
        resources[name] = {
            "health": entry["health"],
            "breaker": entry["breaker"],
            "requests": entry["requests"],
            "failures": entry["failures"],
            "timeouts": entry["timeouts"],
            "success_rate": entry["success_rate"],
            "p95_ms": latency.get("p95"),
            "connections_opened": entry["connections"]["opened"],
            "connections_reused": entry["connections"]["reused"],
            "last_error": entry["last_error"],
        }
        # a provider's kind, priority and connection limit, where it has them
        for detail in ("kind", "priority", "max_connections"):
            if detail in entry:
                resources[name][detail] = entry[detail]
    return {"pool": stats["state"], "uptime_s": stats["uptime_s"], "resources": resources}


async def stats_report(pool: ConnectionPool, outbox: Outbox | None = None) -> str:
    """The summary as compact JSON, with the memory writes waiting or set aside."""
    summary = stats_summary(pool)
    if outbox is not None:
        summary["memory_outbox"] = await outbox.totals()
    return redact(json.dumps(summary, separators=(",", ":")))


async def cleanup_report(pool: ConnectionPool) -> str:
    report = await pool.cleanup()
    done = {action: names for action, names in report.items() if names}
    if not done:
        return "Nothing needed cleaning: every connection is healthy and in use."
    return redact(json.dumps(done, separators=(",", ":")))
