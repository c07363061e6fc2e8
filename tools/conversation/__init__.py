"""What the person hears and when: the session on the pool's clients, the first words, the
acknowledgement of a slow model, what is said in trouble, when the person has finished,
and learning after each turn."""

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
from .greeting_audio import GreetingAudio, say_greeting
from .learning import SUMMARY_KEY, PostTurnWorker, follow_turns, parse_facts
from .opening import Opening
from .parallel import CallResult, parallel_ai_calls
from .person import (
    SERVED_KINDS,
    identity_user,
    memory_user,
    named_in_room,
    register_pool_panel,
    wait_for_person,
)
from .phrases import (
    PHRASES,
    PhraseKey,
    Phrases,
    speak_up_on_errors,
    voice_directory,
    voice_id,
)
from .playback import play
from .reply_wait import tell_reply_waits
from .resume import RESUMED_GREETING, ConversationMark, compose_resumption, running_summary
from .session import (
    VOICE_CONN_OPTIONS,
    GracefulSession,
    JobResources,
    SessionData,
    build_session,
)
from .turn_taking import (
    TranscriptTurnDetector,
    end_of_turn_probability,
    turn_handling,
    whole_turns,
)
from .voice_track import VoiceTrack

__all__ = [
    "GENERIC_GREETING",
    "GREETING_CATEGORIES",
    "PHRASES",
    "RESUMED_GREETING",
    "SERVED_KINDS",
    "SUMMARY_KEY",
    "VOICE_CONN_OPTIONS",
    "Acknowledgement",
    "CallResult",
    "ConversationMark",
    "GracefulSession",
    "GreetingAudio",
    "JobResources",
    "Opening",
    "PhraseKey",
    "Phrases",
    "PostTurnWorker",
    "SessionData",
    "TranscriptTurnDetector",
    "VoiceTrack",
    "acknowledged",
    "build_session",
    "compose_greeting",
    "compose_resumption",
    "end_of_turn_probability",
    "first_words",
    "follow_turns",
    "forget_greeting",
    "greeting_for",
    "greeting_key",
    "identity_user",
    "memory_user",
    "named_in_room",
    "parallel_ai_calls",
    "parse_facts",
    "play",
    "register_pool_panel",
    "running_summary",
    "say_greeting",
    "speak_up_on_errors",
    "tell_reply_waits",
    "turn_handling",
    "voice_directory",
    "voice_id",
    "wait_for_person",
    "whole_turns",
]
