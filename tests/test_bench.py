"""The benchmark itself, as a tiny run: it completes and writes every figure it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench.turns import AGENT_NICE, agent_worker
from room.livekit_server import LiveKitServer
from testbed.openai_server import OpenAIServer
from testbed.waiting import wait_until_sync

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_a_quick_bench_run_writes_every_figure(
    tmp_path: Path, pg_admin_dsn: str, redis_url: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "TEST_DATABASE_URL": pg_admin_dsn, "TEST_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for key in (
        "commit", "measured_at", "machine", "rtt_ms", "pooled_vs_fresh", "warm_first_request",
        "parallel", "greeting_cache", "memory_batch", "pool_overhead", "connection_reuse",
        "pool_rss_mb", "voice_turn",
    ):  # fmt: skip
        assert key in results, key
    assert set(results["pooled_vs_fresh"]) == {"fresh_p50_ms", "pooled_p50_ms", "ratio"}
    assert set(results["voice_turn"]) == {
        "rtt_ms",
        "with_pool_ms",
        "without_pool_ms",
        "vad_silence_ms",
        "pipeline_with_pool_ms",
        "pipeline_without_pool_ms",
    }
    assert {row["backend"] for row in results["memory_batch"]} == {"sqlite", "postgres"}
    # the counts are exact, whatever the machine's speed
    for layer in ("sqlite", "redis"):
        greeting = results["greeting_cache"][layer]
        assert (greeting["miss_llm_calls"], greeting["hit_llm_calls"]) == (1, 0)
        assert greeting["concurrent_llm_calls"] == 1
        # a fresh process finds it in the shared layer, without asking the model
        assert greeting["new_process_from_shared_layer"] is True
        assert greeting["new_process_llm_calls"] == 0
    assert results["connection_reuse"]["connections_opened"] == 1
    assert (tmp_path / "results.png").stat().st_size > 10_000
    assert "| pooled_vs_fresh p50 |" in result.stdout


def test_a_quick_silence_bench_measures_every_fault(tmp_path: Path, livekit: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.silence", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "silence.json").read_text())
    assert results["commit"] and results["measured_at"]
    cases = results["cases"]
    assert set(cases) == {"normal", "slow_model", "provider_down", "stt_down", "tts_down", "burst"}
    for case in cases.values():  # figures, not limits: those are the README's to report
        assert case["turns"] >= 2 and case["longest_silence_s"] is not None
    assert "| slow_model |" in result.stdout


def test_a_quick_load_bench_measures_both_agents_side_by_side(
    tmp_path: Path, livekit: object
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.load", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "load.json").read_text())
    assert results["commit"] and results["measured_at"]
    assert set(results["agents"]) == {"pooled", "plain"}
    for rows in results["agents"].values():
        assert [row["n"] for row in rows] == [1, 2]
        for row in rows:
            # everyone was greeted and answered, and every figure was measured
            assert (row["served"], row["refused"], row["turns_failed"]) == (row["n"], 0, 0)
            assert row["turns"] == row["n"]
            assert all(value is not None for value in row.values()), row
    assert [r["n"] for r in results["ratios"]] == [1, 2]
    assert (tmp_path / "load.png").stat().st_size > 10_000
    assert "| N | pooled/plain reply p50 |" in result.stdout


@pytest.mark.postgres
def test_a_quick_sizing_bench_counts_what_a_turn_costs_each_service(
    tmp_path: Path, livekit: object, pg_admin_dsn: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.sizing", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "TEST_DATABASE_URL": pg_admin_dsn},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "sizing.json").read_text())
    talk = results["talk"]
    assert (talk["served"], talk["turns"], talk["turns_failed"]) == (2, 2, 0)
    turn = talk["per_turn"]
    # each turn asked the provider, and memory went to PostgreSQL and greetings to Redis
    assert turn["ai_requests"]["/v1/chat/completions"] >= 1 and turn["ai_connections"] > 0
    assert turn["pg_transactions"] > 0 and turn["pg_rows_written"] > 0
    assert turn["cache_commands"] > 0 and talk["peak"]["pg_backends"] >= 2
    assert talk["routing_commands_per_conversation_s"] > 0
    assert talk["worker_cores_per_conversation"] > 0
    assert set(results["redis_capacity_per_s"]) == {"get", "set"}
    fleet = results["fleet"]
    assert [s["conversations"] for s in fleet["sized"]] == [1_000, 100_000]
    small, large = fleet["sized"]
    assert 0 < small["worker_machines"] < large["worker_machines"]
    assert len(fleet["limits"]) == 6
    assert "| limit | reached at conversations |" in result.stdout


@pytest.mark.parametrize("agent", ["this", "livekit"])
def test_bench_turns_runs_each_agent_below_the_people_and_the_provider(
    agent: str, livekit: LiveKitServer, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    """Every thread of the worker and of the job processes it keeps ready: a starved test
    microphone is a pause the agent hears that nobody made."""
    env = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "bench-key"}
    with agent_worker(agent, livekit, tmp_path, env) as worker:
        assert worker.process is not None
        wait_until_sync(lambda: len(worker.job_processes()) >= 2, 60, what="job processes")
        tree = [psutil.Process(worker.process.pid), *worker.job_processes()]
        priorities = {
            (process.pid, thread.id): os.getpriority(os.PRIO_PROCESS, thread.id)
            for process in tree
            for thread in process.threads()
        }
    assert set(priorities.values()) == {AGENT_NICE}, priorities
    assert os.getpriority(os.PRIO_PROCESS, 0) < AGENT_NICE  # below this process: the people
