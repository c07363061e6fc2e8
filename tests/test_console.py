"""The terminal conversation a user gets from `make run`, driven through a real pty."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from testbed.openai_server import OpenAIServer, Rule
from tests.support.console import ROOT, agent_env, spawn_console
from tests.support.services import SECRET_MARKER

pytestmark = pytest.mark.slow


def test_console_text_conversation(server: OpenAIServer, tmp_path: Path) -> None:
    server.script(
        Rule(text="Nice to meet you, Ada.", when=lambda body: "my name is Ada" in str(body))
    )
    env = agent_env(tmp_path, OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=SECRET_MARKER)
    child = spawn_console(env, tmp_path)
    transcript: list[str] = []
    try:
        child.expect("Type to talk", timeout=90)
        transcript.append(child.before)
        # the agent's first words are shown, as its replies are
        child.expect("● Agent", timeout=60)
        child.expect("Type to talk", timeout=30)
        transcript.append(child.before)
        child.send("my name is Ada\r")
        child.expect("Nice to meet you, Ada", timeout=60)
        transcript.append(child.before)
        child.sendcontrol("c")
        child.expect(pexpect.EOF, timeout=60)
        transcript.append(child.before)
    finally:
        child.close(force=True)

    assert SECRET_MARKER not in "".join(transcript)
    assert server.count("/chat/completions") >= 1
    # a first screen of the greeting and a prompt: no log lines, no warnings about LiveKit
    # Cloud features this agent does not use
    first_screen = "".join(transcript[:2])
    for noise in ("DEBUG", "INFO", "WARNING", "LIVEKIT_INFERENCE_URL", "AdaptiveInterruption"):
        assert noise not in first_screen, noise


def test_missing_openai_settings_fail_fast_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent.py"), "console", "--text"],
        cwd=tmp_path,  # no .env there
        env=agent_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "OPENAI_API_KEY" in lines[0] and ".env" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_a_console_without_portaudio_names_the_package_in_one_line(tmp_path: Path) -> None:
    """As on a machine without libportaudio2: the library lookup finds nothing."""
    hide = tmp_path / "hide_portaudio"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import ctypes.util\n"
        "_find = ctypes.util.find_library\n"
        "ctypes.util.find_library = lambda name: None if 'portaudio' in name else _find(name)\n"
    )
    env = agent_env(tmp_path, OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API_KEY="sk-x")
    env["PYTHONPATH"] = str(hide)
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent.py"), "console", "--text"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PortAudio" in lines[0] and "sudo apt-get install libportaudio2" in lines[0]
