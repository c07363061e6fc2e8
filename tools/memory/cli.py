"""``python agent.py memory outbox|replay``: what waits in the outbox, and a second chance
for the writes the store refused."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .leftovers import machine_outbox
from .model import MemoryStore
from .outbox import MAX_FAILURES, Outbox
from .outbox_file import OutboxReport

if TYPE_CHECKING:
    from ..settings import Settings

USAGE = "usage: python agent.py memory outbox | memory replay [--deadline SECONDS]"


def run(args: list[str], settings: Settings) -> int:
    if args[:1] == ["outbox"] and len(args) == 1:
        print(asyncio.run(_show(settings)))
        return 0
    if args[:1] == ["replay"]:
        deadline_s = 30.0
        if len(args) == 3 and args[1] == "--deadline":
            try:
                deadline_s = float(args[2])
            except ValueError:
                deadline_s = -1.0
        if deadline_s <= 0 or len(args) not in (1, 3):
            print(USAGE)
            return 2
        text, left = asyncio.run(_replay(settings, deadline_s))
        print(text)
        return 1 if left else 0
    print(USAGE)
    return 2


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe(report: OutboxReport, path: str) -> str:
    totals = report.totals()
    retrying = f" ({totals['retrying']} failing on their own)" if totals["retrying"] else ""
    lines = [
        f"outbox {path}: {totals['pending']} pending{retrying}, {totals['set_aside']} set aside",
    ]
    for title, rows in (("pending", report.pending), ("set aside", report.set_aside)):
        for user_id, (count, oldest) in rows.items():
            lines.append(f"  {title:<9}  {user_id}: {count} writes, oldest {_age(oldest)}")
    for error, count, failures in report.failing:
        lines.append(
            f"  failing {count}x ({failures} of {MAX_FAILURES} tries, then set aside): {error}"
        )
    for error, count in report.reasons:
        lines.append(f"  refused {count}x: {error}")
    if totals["set_aside"]:
        lines.append("Fix the cause, then: python agent.py memory replay")
    return "\n".join(lines)


async def _show(settings: Settings) -> str:
    outbox = await Outbox(settings.memory_outbox_path, _no_store).open()
    try:
        return describe(await outbox.report(), settings.memory_outbox_path)
    finally:
        await outbox.close()


async def _replay(settings: Settings, deadline_s: float) -> tuple[str, int]:
    async with machine_outbox(settings) as outbox:
        queued = await outbox.replay_set_aside()
        left = await outbox.drain(deadline_s)
        report = await outbox.report()
    refused = report.totals()["set_aside"]
    stored = outbox.flushed
    text = (
        f"replayed {queued} set-aside writes: {stored} writes stored, {refused} refused "
        f"again, {left} still waiting for the store"
    )
    return text + "\n" + describe(report, settings.memory_outbox_path), left + refused


async def _no_store() -> MemoryStore:
    raise RuntimeError("listing the outbox needs no store")
