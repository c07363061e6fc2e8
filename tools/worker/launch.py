"""What ``python agent.py <command>`` checks and prepares before livekit's CLI takes over:
settings the command needs, and the process environment livekit reads at start."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livekit.agents import AgentServer

from pool import ConfigError, redact, warm_tls

from ..memory import store_left_writes
from ..providers import import_plugin, uses_google
from ..settings import Settings
from .console import portaudio_installed
from .process import build_first_use, import_ahead, settle_heap

logger = logging.getLogger(__name__)

CONVERSATION_COMMANDS = frozenset({"console", "dev", "start", "connect"})
WORKER_COMMANDS = frozenset({"dev", "start", "connect"})


def command_of(argv: Sequence[str]) -> str:
    return next((arg for arg in argv[1:] if not arg.startswith("-")), "")


def settings_for(command: str, argv: Sequence[str]) -> Settings:
    """The settings, refused in one sentence (ConfigError) when ``command`` cannot run."""
    settings = Settings.from_env()
    if command in CONVERSATION_COMMANDS:
        settings.require_openai()
    # the CLI's own --url/--api-key/--api-secret flags stand in for the variables
    if command in WORKER_COMMANDS and not any(
        arg.startswith(("--url", "--api-key", "--api-secret")) for arg in argv
    ):
        settings.require_livekit()
    if command == "console" and not portaudio_installed():
        raise ConfigError(
            "the console needs the PortAudio library, even in text mode; install it with: "
            "sudo apt-get install libportaudio2 (`make run` does this for you)"
        )
    return settings


def prepare_process(settings: Settings, command: str) -> None:
    """The main process, before livekit forks its job processes from it."""
    if uses_google(settings):
        import_plugin()  # on the main thread, before livekit forks its job processes
    if settings.turn_detection != "audio":
        # livekit would load its audio end-of-turn weights (~244 MB) into every worker
        os.environ.setdefault("LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE", "0")
    if command == "console":
        # livekit builds the console's stand-in room with unittest.mock, a 100-200 ms stall
        # on a busy machine that it would report on the first screen; in the console a
        # stall is worth a line when a person would notice it
        os.environ.setdefault("LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS", "500")
    import_ahead()
    build_first_use()
    warm_tls()  # the CA bundle parsed here, not on the first job's event loop
    settle_heap()


def program_modules() -> list[str]:
    """The program (``agent.py``) as a module livekit's forkserver can import, with the
    project beside it.

    Python 3.11's forkserver never imports ``__main__`` (it looks for a ``main_path`` the
    parent does not send) and ignores the parent's ``sys.path``: by name, and with the
    program's directory on ``PYTHONPATH`` (which it inherits), it finds them. A job process
    still runs the program's own lines as ``__mp_main__``; what they import is then there.
    """
    program = Path(sys.argv[0]).resolve()
    if program.suffix != ".py" or not program.is_file():
        return []
    here = str(program.parent)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if here not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([here, *filter(None, paths)])
    return [program.stem]


def server_options(settings: Settings, command: str) -> dict[str, Any]:
    """The worker's options for livekit's ``AgentServer``, from the settings."""
    # the console's first screen is the greeting and a prompt; a worker logs what it does
    level = settings.log_level or ("WARNING" if command == "console" else "INFO")
    options: dict[str, Any] = {
        "log_level": "WARN" if level == "WARNING" else level,
        "prometheus_port": settings.prometheus_port,
        "drain_timeout": round(settings.drain_timeout_s),
        # processes ready before a burst: starting one is the CPU spike a burst would pay
        "num_idle_processes": min(settings.max_conversations, settings.idle_processes),
        # job processes fork from livekit's forkserver: with the program's imports and its
        # warm-up loaded there once, each one starts from a copy of them
        "preload_modules": [*program_modules(), "tools.worker.preload"],
        # room for finish_session and the memory flush before the process is killed
        "shutdown_process_timeout": settings.turn_drain_s + 15.0,
    }
    if settings.agent_http_port is not None:
        options["port"] = settings.agent_http_port
    return options


def store_left_writes_at_start(server: AgentServer, settings: Settings) -> None:
    """Once the worker runs, the writes a killed run on this machine left in its outbox go
    to the store, whether or not a conversation comes to this machine soon."""
    running: set[asyncio.Task[None]] = set()

    async def store() -> None:
        try:
            await store_left_writes(settings)
        except Exception as exc:  # the next conversation's outbox retries them
            logger.warning("could not store the outbox's leftovers: %s", redact(str(exc))[:200])

    def started() -> None:
        task = asyncio.create_task(store(), name="outbox-leftovers")
        running.add(task)
        task.add_done_callback(running.discard)

    server.on("worker_started", started)
