"""`python agent.py start` as a real process against a local LiveKit server: started with
the test's environment, its output kept in a file, stopped by its pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import ClassVar

import psutil

from room.livekit_server import API_KEY, API_SECRET, LiveKitServer
from room.ports import free_tcp_port

from .person import Person
from .waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
# the variables of the agent's own settings: a test's worker sees only those it is given
AGENT_SETTINGS = ("OPENAI_", "LIVEKIT_", "MEMORY_", "DATABASE_", "SUPABASE_", "REDIS_")


def agent_env(workdir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any agent setting, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(AGENT_SETTINGS)}
    env.update(
        MEMORY_SQLITE_PATH=str(workdir / "memory.db"),
        MEMORY_OUTBOX_PATH=str(workdir / "outbox.db"),
        **extra,
    )
    return env


class Worker:
    # every worker started in this process, so a failed test can show their logs
    started: ClassVar[list[Worker]] = []

    def __init__(
        self,
        livekit: LiveKitServer,
        workdir: Path,
        *,
        program: Path = ROOT / "agent.py",
        nice: int = 0,
        **env: str,
    ) -> None:
        """``nice``: the worker and every process it starts run at this CPU priority (see
        bench/turns.py, where the people and the provider must not wait for the agents)."""
        self.program = program
        self.nice = nice
        self.workdir = workdir
        self.livekit = livekit
        # dispatched by name, so rooms reach this worker even with others on the server
        self.agent_name = env.pop("AGENT_NAME", f"agent-{uuid.uuid4().hex[:8]}")
        self.env = agent_env(
            workdir,
            AGENT_NAME=self.agent_name,
            LIVEKIT_URL=livekit.url,
            LIVEKIT_API_KEY=API_KEY,
            LIVEKIT_API_SECRET=API_SECRET,
            AGENT_HTTP_PORT=str(free_tcp_port()),
            **env,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(
            tempfile.mkstemp(prefix="agent-worker-", suffix=".log", dir=workdir)[1]
        )

    def start(self, timeout_s: float = 90.0) -> Worker:
        command = [sys.executable, str(self.program), "start"]
        if self.nice:
            # set before the program runs, so every thread and job process inherits it
            command = ["nice", "-n", str(self.nice), *command]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the worker keeps it open
        self.process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        Worker.started.append(self)
        self.wait_for("registered worker", timeout_s)
        return self

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def wait_for(self, text: str, timeout_s: float, *, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while self.output().count(text) < count:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the worker exited ({self.process.returncode}):\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker never logged {text!r}:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def running_jobs(self) -> int:
        """Jobs the worker counts against its capacity, from livekit's own ``/worker``
        endpoint: a conversation still closing counts until its process has finished."""
        url = f"http://127.0.0.1:{self.env['AGENT_HTTP_PORT']}/worker"
        with urllib.request.urlopen(url, timeout=10) as response:
            # protobuf's JSON leaves out a field that is zero
            return int(json.load(response).get("active_jobs", 0))

    async def until_idle(self, timeout_s: float = 60.0) -> None:
        """Until the conversations already over have closed: they count against the
        worker's capacity for the seconds they take to, and a burst of rooms arriving
        meanwhile finds fewer places than its size (the last of them refused)."""
        await wait_until(
            lambda: self.running_jobs() == 0,
            timeout_s,
            what="earlier conversations closed",
            every_s=0.2,
        )
        # ...and a worker that was full has noticed (it checks every half second) and told
        # livekit-server, which sends no room to a worker it last heard was full
        output = self.output
        await wait_until(
            lambda: output().count("worker takes rooms again") >= output().count("worker is full"),
            timeout_s,
            what="the worker to take rooms again",
            every_s=0.1,
        )

    def job_processes(self) -> list[psutil.Process]:
        """The worker's children that run (or wait to run) jobs."""
        if self.process is None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.process.pid).children(recursive=True)
        return []

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, as a process manager stops a worker; its exit code."""
        process, self.process = self.process, None
        if process is None:
            return 0
        children = []
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(process.pid).children(recursive=True)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(10)
        # a child left behind is the worker's bug, but it must not outlive the test
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.is_running():
                    child.kill()
        return code

    def kill(self) -> list[int]:
        """SIGKILL the worker and its job processes at once, as when its machine is lost;
        their pids. Nothing of them runs after this: no shutdown, no flush."""
        process, self.process = self.process, None
        if process is None:
            return []
        tree = [psutil.Process(process.pid)]
        with contextlib.suppress(psutil.NoSuchProcess):
            tree += tree[0].children(recursive=True)
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=10)
        process.wait(10)
        return [member.pid for member in tree]

    def person(self, identity: str, room: str, **options: float) -> Person:
        """Someone who joins ``room`` with this worker's agent dispatched to it."""
        return Person(self.livekit.url, identity, room, agent=self.agent_name, **options)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()


def room_env(openai_base_url: str, **extra: str) -> dict[str, str]:
    """The settings every room test's worker runs with, plus ``extra``."""
    return {
        "OPENAI_BASE_URL": openai_base_url,
        **extra,
    }


__all__ = ["ROOT", "Worker", "agent_env", "room_env"]
