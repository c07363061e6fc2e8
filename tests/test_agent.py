from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from livekit.agents import AgentSession

from agent import Assistant
from pool import ConnectionPool, install_log_redaction
from testbed.openai_server import OpenAIServer, Rule, has_tool_result
from testbed.worker import ROOT, agent_env
from tests.support.services import SECRET_MARKER
from tools.conversation import SessionData, build_session
from tools.settings import Settings


@pytest.fixture
async def session(
    pool: ConnectionPool, settings: Settings
) -> AsyncIterator[AgentSession[SessionData]]:
    userdata = SessionData(pool=pool, settings=settings, user_id="tester")
    async with await build_session(pool, settings, userdata, vad=None) as session:
        await session.start(Assistant())
        yield session


def tool_then_text(tool: str, text: str) -> list[Rule]:
    return [
        Rule(tool_calls=[(tool, {})], when=lambda body: not has_tool_result(body)),
        Rule(text=text, when=has_tool_result),
    ]


async def test_stats_tool_through_a_real_turn(
    session: AgentSession[SessionData], server: OpenAIServer
) -> None:
    server.script(*tool_then_text("getConnectionPoolStats", "All connections are healthy."))

    result = await session.run(user_input="How are your connections doing?")

    result.expect.next_event().is_function_call(name="getConnectionPoolStats")
    output = result.expect.next_event().is_function_call_output().event().item.output
    stats = json.loads(output)
    assert stats["resources"]["openai"]["health"] == "HEALTHY"
    assert stats["resources"]["openai"]["requests"] >= 1
    result.expect.next_event().is_message(role="assistant")
    # the tool's output went back to the model in the follow-up request
    follow_up = server.bodies("/chat/completions")[-1]
    assert any("HEALTHY" in str(m.get("content")) for m in follow_up["messages"])


async def test_cleanup_tool_through_a_real_turn(
    session: AgentSession[SessionData], server: OpenAIServer, pool: ConnectionPool
) -> None:
    http = await pool.http()
    await http.close()
    server.script(*tool_then_text("cleanupConnectionPool", "I cleaned up the connections."))

    result = await session.run(user_input="Please clean up your connections.")

    result.expect.next_event().is_function_call(name="cleanupConnectionPool")
    output = result.expect.next_event().is_function_call_output().event().item.output
    assert json.loads(output)["dropped_broken"] == ["http"]
    result.expect.next_event().is_message(role="assistant")


async def test_ten_turns_reuse_one_tcp_connection(
    session: AgentSession[SessionData], server: OpenAIServer, pool: ConnectionPool
) -> None:
    await session.run(user_input="first turn")  # after the session's own prewarm requests
    opened_before = server.connections

    for turn in range(10):
        result = await session.run(user_input=f"turn {turn}")
        assert result.expect[0].event().item.text_content == f"You said: turn {turn}"

    assert server.count("/chat/completions") == 11
    assert server.connections == opened_before
    connections = pool.stats().resources["openai"].connections
    assert connections.reused >= 10


async def test_no_secret_in_stats_tool_output_or_logs(
    session: AgentSession[SessionData],
    server: OpenAIServer,
    pool: ConnectionPool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    server.script(*tool_then_text("getConnectionPoolStats", "Fine."))
    logging.getLogger("test").warning("connecting with key %s", SECRET_MARKER)
    logging.getLogger("test").warning("dsn postgresql://app:hunter2pw@db.example:5432/x")

    result = await session.run(user_input="stats please")

    output = result.expect[1].event().item.output
    everything = json.dumps(pool.stats().as_dict()) + output + caplog.text
    assert SECRET_MARKER not in everything
    assert "hunter2pw" not in everything
    assert "***" in caplog.text


def test_a_job_process_keeps_the_collector_off_what_it_imported(tmp_path: Path) -> None:
    """One full collection of the imported heap takes about 150 ms here: a stalled event
    loop mid-turn. After prewarm that heap is frozen, out of the collector's reach."""
    probe = (
        "import gc\n"
        "import agent\n"
        "class Proc:\n"
        "    userdata = {}\n"
        "agent.prewarm(Proc())\n"
        "print(gc.get_freeze_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=agent_env(tmp_path, OPENAI_BASE_URL="http://127.0.0.1:9/v1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 100_000
