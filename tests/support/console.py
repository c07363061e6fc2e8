"""`python agent.py console --text` as a user runs it: in a pseudo-terminal, from a fresh
directory, with only the environment the test gives it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[2]
AGENT_SETTINGS = ("OPENAI_", "LIVEKIT_", "MEMORY_", "DATABASE_", "SUPABASE_", "REDIS_")


def agent_env(workdir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any agent setting, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("OPENAI_", "LIVEKIT_", "MEMORY_", "DATABASE_", "SUPABASE_", "REDIS_")
        )
    }
    env.update(
        MEMORY_SQLITE_PATH=str(workdir / "memory.db"),
        MEMORY_OUTBOX_PATH=str(workdir / "outbox.db"),
        **extra,
    )
    return env


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
