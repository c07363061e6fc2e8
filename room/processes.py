"""Stopping the server processes we started, by their pid, whatever state they are in."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop(
    process: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, wait_s: float = 15
) -> None:
    """Ask with ``sig``; kill if it has not exited within ``wait_s``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def kill(process: subprocess.Popen[Any] | None) -> None:
    """Lose it at once, as when its host dies."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(10)
