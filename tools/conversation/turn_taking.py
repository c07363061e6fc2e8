"""When the person has finished: the end of a turn judged from what was said.

Silence alone cannot tell "what is the weather like" (finished) from "I would like to book
a table for" (a pause mid-sentence): both end in the same half second of quiet. The words
can. :class:`TranscriptTurnDetector` is a livekit turn detector over the transcript: an
utterance that ends on a word English does not end on (an article, a preposition, a
conjunction, a possessive, an auxiliary, a filler, "my name is") is unlikely to be finished,
so livekit holds the turn open for the endpointing maximum; anything else is likely
finished, and the turn is committed after the short minimum. It needs no model and no
download, and it judges speech by its words, where audio end-of-turn models cannot judge
synthetic speech at all (they give every espeak-ng sentence the same probability).

When the person goes on after the agent began answering a fragment, livekit interrupts the
reply; :func:`join_continuation` then makes the two parts one user turn, so the next reply
answers the whole sentence, not its second half.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from livekit.agents import llm
from livekit.agents.language import LanguageCode
from livekit.agents.voice.turn import TurnDetectionMode, TurnHandlingOptions

if TYPE_CHECKING:
    from ..settings import Settings

# livekit holds a turn open (endpointing max_delay) below this probability
UNLIKELY = 0.5
LIKELY_FINISHED = 0.9
UNFINISHED = 0.05

ARTICLES = {"a", "an", "the"}
PREPOSITIONS = {
    "about", "above", "across", "after", "against", "along", "among", "around", "as", "at",
    "before", "behind", "below", "beneath", "beside", "between", "beyond", "by", "despite",
    "during", "for", "from", "in", "inside", "into", "near", "of", "off", "on", "onto",
    "over", "per", "since", "than", "through", "throughout", "to", "toward", "towards",
    "under", "until", "upon", "via", "with", "within", "without",
}  # fmt: skip
CONJUNCTIONS = {
    "although", "and", "because", "but", "if", "nor", "or", "though", "unless", "whereas",
    "whether", "while", "whilst",
}  # fmt: skip
DETERMINERS = {"my", "your", "his", "her", "its", "our", "their", "every", "each", "whose"}
AUXILIARIES = {
    "am", "are", "be", "been", "being", "can", "could", "did", "do", "does", "had", "has",
    "have", "is", "may", "might", "must", "shall", "should", "was", "were", "will", "would",
    "i'm", "i'd", "i'll", "i've", "it's", "there's", "that's", "what's", "you're", "we're",
    "they're", "gonna", "wanna", "gotta",
}  # fmt: skip
FILLERS = {"um", "uh", "er", "erm", "hmm", "mm", "uhm"}
# a last word these leave unfinished ("I would like to", "my name is", "tell me about")
CANNOT_END = ARTICLES | PREPOSITIONS | CONJUNCTIONS | DETERMINERS | AUXILIARIES | FILLERS
# ...unless the whole utterance is one of these (a question tag, a short answer)
SHORT_ANSWERS = {
    "yes", "yeah", "yep", "no", "nope", "okay", "ok", "sure", "thanks", "thank you", "right",
    "maybe", "please", "hello", "hi", "bye", "goodbye", "i do", "i did", "i am", "i can",
    "i will", "i have", "it is", "you can", "of course", "i don't", "i can't", "what is it",
}  # fmt: skip

_WORDS = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words_of(text: str) -> list[str]:
    return _WORDS.findall(text.lower().replace("’", "'"))


def end_of_turn_probability(text: str) -> float:
    """How likely ``text`` is a finished utterance, from its last words."""
    said = words_of(text)
    if not said:
        return LIKELY_FINISHED  # nothing to judge: silence decides
    if " ".join(said) in SHORT_ANSWERS or " ".join(said[-2:]) in SHORT_ANSWERS - {"i am"}:
        return LIKELY_FINISHED
    if said[-1] in CANNOT_END:
        return UNFINISHED
    return LIKELY_FINISHED


class TranscriptTurnDetector:
    """A livekit turn detector (``turn_handling={"turn_detection": ...}``) that judges the
    transcript of the turn so far; English only (other languages fall back to silence)."""

    @property
    def model(self) -> str:
        return "transcript-rules"

    @property
    def provider(self) -> str:
        return "local"

    async def unlikely_threshold(self, language: LanguageCode | None) -> float | None:
        return UNLIKELY

    async def supports_language(self, language: LanguageCode | None) -> bool:
        return language is None or not str(language) or str(language).lower().startswith("en")

    async def predict_end_of_turn(
        self, chat_ctx: llm.ChatContext, *, timeout: float | None = None
    ) -> float:
        for item in reversed(chat_ctx.items):
            if isinstance(item, llm.ChatMessage) and item.role == "user":
                return end_of_turn_probability(item.text_content or "")
        return LIKELY_FINISHED


def join_continuation(
    chat_ctx: llm.ChatContext, new_message: llm.ChatMessage, *, within_s: float = 8.0
) -> llm.ChatContext | None:
    """When the person went on after the agent began (its reply to the last user message was
    interrupted, or never spoken), the conversation with that message and the cut reply taken
    out and ``new_message`` holding both parts; None when this turn is a turn of its own."""
    items = chat_ctx.items
    messages = [
        i
        for i, item in enumerate(items)
        if isinstance(item, llm.ChatMessage) and item.role != "system"
    ]
    if not messages:
        return None
    last = items[messages[-1]]
    assert isinstance(last, llm.ChatMessage)
    if last.role == "assistant" and last.interrupted and len(messages) >= 2:
        fragment_at, reply_at = messages[-2], messages[-1]
    elif last.role == "user":
        fragment_at, reply_at = messages[-1], None
    else:
        return None
    fragment = items[fragment_at]
    assert isinstance(fragment, llm.ChatMessage)
    if fragment.role != "user" or new_message.created_at - fragment.created_at > within_s:
        return None
    joined = f"{fragment.text_content or ''} {new_message.text_content or ''}".strip()
    new_message.content = [joined]
    kept = chat_ctx.copy()
    drop = {items[fragment_at].id} | ({items[reply_at].id} if reply_at is not None else set())
    kept.items[:] = [item for item in kept.items if item.id not in drop]
    return kept


def turn_handling(settings: Settings) -> TurnHandlingOptions:
    """The session's turn handling: who decides that the person finished, how long silence
    is waited out for a turn that sounds finished and for one that does not, and the reply
    begun while the turn is still open (preemptive generation)."""
    detection: TurnDetectionMode
    if settings.turn_detection == "transcript":
        detection = TranscriptTurnDetector()
    elif settings.turn_detection == "audio":
        from livekit.agents import inference

        # livekit's bundled model, local: it judges prosody, which synthetic speech lacks
        detection = inference.TurnDetector(version="v1-mini")
    else:
        detection = "vad"
    return {
        "turn_detection": detection,
        "endpointing": {
            "mode": "fixed",
            "min_delay": settings.turn_min_delay_s,
            "max_delay": settings.turn_max_delay_s,
        },
        # adaptive interruption needs LiveKit Cloud: the VAD needs nothing beyond this process
        "interruption": {"mode": "vad"},
        "preemptive_generation": {"enabled": True, "preemptive_tts": settings.preemptive_tts},
    }
