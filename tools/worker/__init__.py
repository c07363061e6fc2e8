"""The worker around the conversations: its load as conversations against a capacity, and
the terminal console's view of the agent's words."""

from __future__ import annotations

from .capacity import CAPACITY, CONVERSATIONS, FULL, conversation_load
from .console import portaudio_installed, quiet_unused_cloud_warnings, show_agent_words

__all__ = [
    "CAPACITY",
    "CONVERSATIONS",
    "FULL",
    "conversation_load",
    "portaudio_installed",
    "quiet_unused_cloud_warnings",
    "show_agent_words",
]
