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
reply; :func:`whole_turns` then shows the model the two parts as one user turn, so the next
reply answers the whole sentence, not its second half.
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
# words after a cut reply continue the person's last words when they came this soon after
CONTINUATION_S = 8.0

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


def whole_turns(chat_ctx: llm.ChatContext, *, within_s: float = CONTINUATION_S) -> llm.ChatContext:
    """The conversation as the model should read it: where the person went on after the
    agent began (its reply to their last words was cut, or never spoken), the parts are one
    user turn and the cut reply is gone, so "Order a pizza" and "with extra cheese" are
    answered as "Order a pizza with extra cheese". A view: ``chat_ctx`` is left as it was.

    Applied where each reply is generated (``llm_node``), not when the turn is committed, so
    that the reply livekit begins before the commit (preemptive generation) is generated
    from the same conversation as the committed turn and is kept, not discarded."""
    kept: list[llm.ChatItem] = []
    fragment: int | None = None  # in ``kept``: user words no finished reply has answered
    cut: list[int] = []  # in ``kept``: replies to ``fragment`` that were cut
    for item in chat_ctx.items:
        if not isinstance(item, llm.ChatMessage) or item.role in ("system", "developer"):
            kept.append(item)
            continue
        if item.role == "assistant":
            if item.interrupted and fragment is not None:
                cut.append(len(kept))
            else:
                fragment, cut = None, []
            kept.append(item)
            continue
        earlier = kept[fragment] if fragment is not None else None
        if (
            isinstance(earlier, llm.ChatMessage)
            and item.created_at - earlier.created_at <= within_s
        ):
            joined = f"{earlier.text_content or ''} {item.text_content or ''}".strip()
            item = item.model_copy(update={"content": [joined]})
            drop = {fragment, *cut}
            kept = [k for i, k in enumerate(kept) if i not in drop]
        fragment, cut = len(kept), []
        kept.append(item)
    view = chat_ctx.copy()
    view.items[:] = kept
    return view


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
        # adaptive interruption needs LiveKit Cloud: the VAD needs nothing beyond this process.
        # A reply the person speaks over is stopped, not paused to resume if no words follow:
        # livekit begins no reply before the turn's commit while one is paused, and a person
        # going on after a pause ("Order a pizza ... with extra cheese") is the turn that
        # most needs its reply begun early (silero tells speech from noise for the pause)
        "interruption": {"mode": "vad", "resume_false_interruption": False},
        "preemptive_generation": {"enabled": True, "preemptive_tts": settings.preemptive_tts},
    }
