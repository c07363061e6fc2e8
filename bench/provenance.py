"""What a result was measured on: the commit (dirty when code changed), when, and the
machine. Every results file starts with this stamp, and every table's first line says it."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# the benchmarks' own outputs (results files, the README's tables) are not code
OUTPUTS = (":!README.md", ":!bench/*.json", ":!bench/*.png", ":!docs/*.png")


def commit() -> str:
    """The commit measured, marked dirty when the tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *OUTPUTS],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{'-dirty' if dirty else ''}" or "unknown"


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )


def stamp() -> dict[str, Any]:
    """The fields every results file begins with."""
    return {
        "commit": commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }


def stamp_line(results: dict[str, Any]) -> str:
    """The first line of a table: ``commit …, when; machine``."""
    return (
        f"commit {results.get('commit', '?')}, {results.get('measured_at', '?')}; "
        f"{results.get('machine', '?')}"
    )
