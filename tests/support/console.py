"""`python agent.py console --text` as a user runs it: in a pseudo-terminal, from a fresh
directory, with only the environment the test gives it; and `python agent.py memory ...`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pexpect

from testbed.worker import ROOT, agent_env

__all__ = ["ROOT", "agent_env", "memory_command", "spawn_console"]


def spawn_console(env: dict[str, str], workdir: Path) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        [str(ROOT / "agent.py"), "console", "--text"],
        cwd=workdir,  # its .env, if any, is the one read
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 160),
    )


def memory_command(
    args: list[str], env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """`python agent.py memory <args>`, run to its end (at most a minute)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "agent.py"), "memory", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
