"""What the person hears and when: the session on the pool's clients, the first words, the
acknowledgement of a slow model, what is said in trouble, and learning after each turn."""

from __future__ import annotations

from .acknowledge import Acknowledgement, acknowledged
from .greeting import (
    GENERIC_GREETING,
    GREETING_CATEGORIES,
    compose_greeting,
    first_words,
    forget_greeting,
    greeting_for,
    greeting_key,
)
from .learning import SUMMARY_KEY, PostTurnWorker, follow_turns, parse_facts
from .parallel import CallResult, parallel_ai_calls
from .person import register_pool_panel, wait_for_person
from .phrases import PHRASES, PhraseKey, Phrases, speak_up_on_errors, voice_directory
from .session import (
    VOICE_CONN_OPTIONS,
    GracefulSession,
    JobResources,
    SessionData,
    build_session,
)

__all__ = [
    "GENERIC_GREETING",
    "GREETING_CATEGORIES",
    "PHRASES",
    "SUMMARY_KEY",
    "VOICE_CONN_OPTIONS",
    "Acknowledgement",
    "CallResult",
    "GracefulSession",
    "JobResources",
    "PhraseKey",
    "Phrases",
    "PostTurnWorker",
    "SessionData",
    "acknowledged",
    "build_session",
    "compose_greeting",
    "first_words",
    "follow_turns",
    "forget_greeting",
    "greeting_for",
    "greeting_key",
    "parallel_ai_calls",
    "parse_facts",
    "register_pool_panel",
    "speak_up_on_errors",
    "voice_directory",
    "wait_for_person",
]
