"""The worker around the conversations: its load as conversations against a capacity, and
the terminal console's view of the agent's words, and the job process's heap."""

from __future__ import annotations

from .capacity import CAPACITY, CONVERSATIONS, FULL, ConversationServer
from .console import portaudio_installed, quiet_unused_cloud_warnings, show_agent_words
from .process import import_ahead, settle_heap

__all__ = [
    "CAPACITY",
    "CONVERSATIONS",
    "FULL",
    "ConversationServer",
    "import_ahead",
    "portaudio_installed",
    "quiet_unused_cloud_warnings",
    "settle_heap",
    "show_agent_words",
]
