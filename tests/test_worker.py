"""The agent as a process: a LiveKit URL that refuses, and SIGTERM in the middle of a job."""

from __future__ import annotations

import io
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pexpect
import pytest

from testbed.openai_server import Fault, OpenAIServer, Rule, system_text
from testbed.waiting import wait_until_sync
from tests.support.console import ROOT, agent_env, spawn_console
from tests.support.services import SECRET_MARKER

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refusing_livekit_url_is_retried_with_clear_logs_and_sigterm_exits(
    tmp_path: Path,
) -> None:
    env = agent_env(
        tmp_path,
        OPENAI_API_KEY=SECRET_MARKER,
        LIVEKIT_URL=f"ws://127.0.0.1:{free_port()}",  # nothing listens there
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="a-test-secret-that-is-long-enough",
        AGENT_HTTP_PORT=str(free_port()),
    )
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "agent.py"), "start"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert worker.stdout is not None
        deadline = time.monotonic() + 60
        for line in worker.stdout:
            lines.append(line)
            if sum("failed to connect to livekit, retrying" in x for x in lines) >= 2:
                break
            assert time.monotonic() < deadline, "the worker never reported a retry"
        worker.send_signal(signal.SIGTERM)
        rest, _ = worker.communicate(timeout=60)
        lines.append(rest)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    output = "".join(lines)
    retries = [json.loads(x) for x in output.splitlines() if "retrying in" in x]
    assert retries[0]["level"] == "WARNING" and "Connect call failed" in retries[0]["error"]
    assert "Traceback" not in output
    assert SECRET_MARKER not in output
    assert "shutting down worker" in output


def test_sigterm_during_a_job_flushes_memory_and_closes_the_pool(
    server: OpenAIServer, tmp_path: Path
) -> None:
    learned = {"memories": [{"category": "FACT", "key": "city", "value": "Paris"}]}
    # the post-turn learning is still waiting on the model when SIGTERM arrives
    server.script(
        Rule(
            text=json.dumps(learned),
            when=lambda b: "Extract facts" in system_text(b),
            fault=Fault(delay_s=1.0),
        ),
        Rule(
            text="Lives in Paris.",
            when=lambda b: "running summary" in system_text(b),
            fault=Fault(delay_s=1.0),
        ),
    )
    env = agent_env(
        tmp_path, OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=SECRET_MARKER, LOG_LEVEL="INFO"
    )
    child = spawn_console(env, tmp_path)
    child.logfile_read = io.StringIO()
    try:
        child.expect("Type to talk", timeout=90)
        child.send("I live in Paris\r")
        child.expect("You said: I live in Paris", timeout=60)
        # the turn, then the two learning calls, have been sent
        wait_until_sync(lambda: server.count("/chat/completions") >= 3, 30, what="three calls")
        child.kill(signal.SIGTERM)
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)

    with sqlite3.connect(tmp_path / "memory.db") as db:
        rows = set(
            db.execute("SELECT category, key, value FROM memories WHERE user_id = 'console-user'")
        )
    with sqlite3.connect(tmp_path / "outbox.db") as outbox:
        pending = outbox.execute("SELECT count(*) FROM outbox").fetchone()[0]
    assert ("FACT", "city", "Paris") in rows
    assert ("CONTEXT", "conversation_summary", "Lives in Paris.") in rows
    assert pending == 0
    assert "connection pool closed" in child.logfile_read.getvalue()


def test_the_pool_metrics_are_served_on_the_worker_metrics_port(
    server: OpenAIServer, tmp_path: Path
) -> None:
    port = free_port()
    env = agent_env(
        tmp_path,
        OPENAI_BASE_URL=server.base_url,
        OPENAI_API_KEY=SECRET_MARKER,
        PROMETHEUS_PORT=str(port),
    )
    child = spawn_console(env, tmp_path)
    try:
        child.expect("Type to talk", timeout=90)
        child.send("hello metrics\r")
        child.expect("You said: hello metrics", timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        child.sendcontrol("c")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)

    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("agent_")
    }
    assert samples['agent_pool_requests_total{outcome="success",resource="openai"}'] >= 2
    assert samples['agent_pool_breaker_state{resource="openai"}'] == 0.0
    assert any(k.startswith("agent_pool_request_duration_seconds_bucket") for k in samples)
    assert any(k.startswith("agent_llm_time_to_first_token_seconds_count") for k in samples)
    assert SECRET_MARKER not in exposition


def run_agent(command: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python agent.py COMMAND` to its end, from the directory its .env would be read in."""
    return subprocess.run(
        [sys.executable, str(ROOT / "agent.py"), command, *args],
        cwd=env["MEMORY_SQLITE_PATH"].rsplit("/", 1)[0],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("livekit", "says"),
    [
        ({}, "Set LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET:"),
        ({"LIVEKIT_API_KEY": "devkey", "LIVEKIT_API_SECRET": "secret"}, "Set LIVEKIT_URL:"),
        (
            {"LIVEKIT_URL": "livekit.example", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"},
            "LIVEKIT_URL must start with ws://",
        ),
    ],
)
def test_a_worker_without_a_livekit_server_says_so_in_one_line(
    livekit: dict[str, str], says: str, tmp_path: Path
) -> None:
    result = run_agent("start", agent_env(tmp_path, OPENAI_API_KEY=SECRET_MARKER, **livekit))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"agent.py: {says}"), result.stderr


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ({"HEALTH_TICK_S": "soon"}, "HEALTH_TICK_S must be a number, got 'soon'."),
        ({"MEMORY_BACKEND": "mongo"}, "MEMORY_BACKEND must be one of sqlite, postgres, supabase"),
        (
            {"MEMORY_BACKEND": "postgres", "DATABASE_URL": "postgresql://app:pw-9f@db:54x2/m"},
            "DATABASE_URL does not parse as a URL",
        ),
        ({"DATABASE_URL": "db.internal:5432"}, "DATABASE_URL must look like postgres://host"),
        ({"LLM_PROVIDERS": '[{"name": "a", "base_ulr": "x"}]'}, "LLM_PROVIDERS[0] (a) has unknown"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_a_malformed_setting_stops_the_start_with_one_line_naming_it(
    setting: dict[str, str], says: str, tmp_path: Path
) -> None:
    env = agent_env(tmp_path, OPENAI_API_KEY=SECRET_MARKER, **setting)
    result = run_agent("console", env, "--text")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "pw-9f" not in result.stderr  # the password of a bad URL is not shown either
