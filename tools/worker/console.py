"""The terminal console in text mode (``python agent.py console --text``).

livekit's text console prints the replies to what the person types, but not what the agent
says on its own, so the first words would go unseen; this shows them the same way.
"""

from __future__ import annotations

import logging

# `python agent.py console` runs livekit's rich console, which lives in this module (the
# public `cli.AgentsConsole` is the stub for the Go CLI's TCP console)
from livekit.agents.cli._legacy import AgentsConsole

AGENT_STYLE = "bold #6BCB77"  # livekit's own colour for the agent's turns
# what of livekit's console, and of its log text, this module relies on;
# tests/test_upstream_names.py fails when one goes
PRIVATE_API = ("get_instance", "enabled", "console_mode", "console")
CLOUD_WARNING = "LIVEKIT_INFERENCE_URL is set but"


def show_agent_words(text: str) -> None:
    console = AgentsConsole.get_instance()
    if not console.enabled or console.console_mode != "text":
        return
    console.console.print()
    console.console.print("  ● Agent", style=AGENT_STYLE, markup=False, highlight=False)
    for line in text.split("\n"):
        console.console.print(f"    {line}", markup=False, highlight=False)


class UnusedCloudWarnings(logging.Filter):
    """Drops livekit's warning that LiveKit Cloud's turn detector lacks credentials.

    ``AgentSession`` builds that detector as an eager default (``dict.get(key, default)``)
    even when the session names its own turn detection, as this agent does ("vad"); the
    detector is never used, and the person can do nothing about the warning.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(CLOUD_WARNING)


def quiet_unused_cloud_warnings() -> None:
    logger = logging.getLogger("livekit.agents")
    if not any(isinstance(f, UnusedCloudWarnings) for f in logger.filters):
        logger.addFilter(UnusedCloudWarnings())


def portaudio_installed() -> bool:
    """livekit's console imports sounddevice, which cannot load without PortAudio."""
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True
