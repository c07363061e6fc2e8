"""The worker around the conversations: its load as conversations against a capacity, the
terminal console's view of the agent's words, the job process's heap, what a command
checks and prepares before livekit's CLI runs, and the outbox's leftovers stored at start."""

from __future__ import annotations

from .capacity import CAPACITY, CONVERSATIONS, FULL, ConversationServer
from .console import portaudio_installed, quiet_unused_cloud_warnings, show_agent_words
from .launch import (
    command_of,
    prepare_process,
    server_options,
    settings_for,
    store_left_writes_at_start,
)
from .process import import_ahead, settle_heap, silence_detector

__all__ = [
    "CAPACITY",
    "CONVERSATIONS",
    "FULL",
    "ConversationServer",
    "command_of",
    "import_ahead",
    "portaudio_installed",
    "prepare_process",
    "quiet_unused_cloud_warnings",
    "server_options",
    "settings_for",
    "settle_heap",
    "show_agent_words",
    "silence_detector",
    "store_left_writes_at_start",
]
