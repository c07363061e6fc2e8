"""The README's benchmark tables are written by the benchmarks, never by hand: each owns the
text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = Path(__file__).resolve().parent.parent / "README.md"


def replace_section(name: str, text: str, readme: Path = README) -> None:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    content = readme.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{readme.name} has no {start} … {end} section")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text.strip()}\n{end}{tail}")


def publish(
    name: str,
    results: dict[str, Any],
    out: Path,
    *,
    table: Callable[[dict[str, Any]], str],
    chart: Callable[[dict[str, Any], Path], None] | None,
    quick: bool,
) -> None:
    """``name``.json and ``name``.png in ``out``, the table printed, and (a full run into
    bench/) written into the README's section."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    if chart is not None:
        chart(results, out / f"{name}.png")
    text = table(results)
    print(text)
    if out.resolve() == HERE and not quick:
        replace_section(name, text)
