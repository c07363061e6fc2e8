"""The pool as the LLM (and the room page's panel) sees it: compact, readable, with no
secret in it."""

from __future__ import annotations

import json
from typing import Any

from pool import ConnectionPool, redact

from .memory import Outbox


def stats_summary(pool: ConnectionPool) -> dict[str, Any]:
    """The figures worth reading aloud, per resource that has been used or created."""
    stats = pool.stats()
    resources = {name: r.summary() for name, r in stats.resources.items() if r.used}
    return {"pool": stats.state, "uptime_s": stats.uptime_s, "resources": resources}


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
