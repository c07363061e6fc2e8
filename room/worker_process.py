"""``agent.py start`` as a child of `make room` and `make cluster`: its log passes through
to this terminal, and the page is offered only once the worker has registered, so the first
room opened has an agent to dispatch."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from . import processes
from .ports import free_tcp_port

ROOT = Path(__file__).resolve().parent.parent
REGISTERED = b"registered worker"


class WorkerProcess:
    def __init__(self, env: dict[str, str]) -> None:
        # each worker's health endpoint on a port of its own (livekit's default, 8081,
        # would be taken by the second worker and by the second page)
        env = {"AGENT_HTTP_PORT": str(free_tcp_port()), **env}
        self.process = subprocess.Popen(
            [sys.executable, "agent.py", "start"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.registered = threading.Event()
        self._relay = threading.Thread(target=self._pass_through, daemon=True)
        self._relay.start()

    def _pass_through(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            if REGISTERED in line:
                self.registered.set()

    def wait_registered(self, timeout_s: float = 120.0) -> bool:
        """True once registered; False if it exited or the time ran out first."""
        for _ in range(int(timeout_s * 10)):
            if self.registered.wait(0.1):
                return True
            if self.process.poll() is not None:
                return False
        return False

    def stop(self) -> None:
        processes.stop(self.process)
        self._relay.join(5)
