"""The words decide whether a turn ended: what can end an English utterance and what cannot,
and a continuation joined to the fragment it continues."""

from __future__ import annotations

import time

import pytest
from livekit.agents import llm

from tools.conversation import TranscriptTurnDetector, end_of_turn_probability, whole_turns
from tools.conversation.turn_taking import UNLIKELY


@pytest.mark.parametrize(
    "said",
    [
        "What is the weather like today?",
        "I would like to book a table for two people tonight",
        "yes",
        "No.",
        "yeah",
        "thank you",
        "Yes I can",
        "I think I can",
        "Can you tell me a joke",
        "Good morning Bob",
        "a table for two",  # could end here: it is finished until the person goes on
    ],
)
def test_a_finished_utterance_is_likely_the_end(said: str) -> None:
    assert end_of_turn_probability(said) >= UNLIKELY


@pytest.mark.parametrize(
    "said",
    [
        "I would like to book a table for",
        "my name is",
        "I'm looking for a good book about",
        "I want to",
        "tell me about the",
        "I went to the store and",
        "because",
        "it's um",
        "Can I have your",
        "I would",
    ],
)
def test_a_sentence_that_cannot_end_here_holds_the_turn(said: str) -> None:
    assert end_of_turn_probability(said) < UNLIKELY


async def test_the_detector_judges_the_last_user_message() -> None:
    detector = TranscriptTurnDetector()
    chat = llm.ChatContext()
    chat.add_message(role="assistant", content="Hi, how can I help?")
    chat.add_message(role="user", content="I would like to book a table for")
    assert await detector.predict_end_of_turn(chat) < (await detector.unlikely_threshold(None))
    chat.add_message(role="user", content="two people tonight")
    assert await detector.predict_end_of_turn(chat) >= UNLIKELY
    assert await detector.supports_language(None)


def said(chat: llm.ChatContext) -> list[tuple[str, str | None]]:
    return [(m.role, m.text_content) for m in chat.items if isinstance(m, llm.ChatMessage)]


def test_a_continuation_joins_the_fragment_and_drops_the_cut_reply() -> None:
    chat = llm.ChatContext()
    chat.add_message(role="system", content="You are helpful.")
    chat.add_message(role="assistant", content="Hello!")
    chat.add_message(role="user", content="I need a taxi")
    chat.add_message(role="assistant", content="Sure, where", interrupted=True)
    chat.add_message(role="system", content="Memories: FACT name: Robin")  # arrived meanwhile
    chat.add_message(role="user", content="to the airport please")
    before = said(chat)

    view = whole_turns(chat)

    assert said(view) == [
        ("system", "You are helpful."),
        ("assistant", "Hello!"),
        ("system", "Memories: FACT name: Robin"),
        ("user", "I need a taxi to the airport please"),
    ]
    assert view.items[-1].id == chat.items[-1].id  # the turn being answered, whole
    assert said(chat) == before  # a view: the conversation itself is as it happened


def test_a_sentence_continued_twice_and_a_reply_never_spoken_are_one_turn() -> None:
    chat = llm.ChatContext()
    chat.add_message(role="user", content="Send a message")
    chat.add_message(role="assistant", content="To", interrupted=True)
    chat.add_message(role="user", content="to my brother")  # the reply to this never began
    chat.add_message(role="user", content="saying I am late")
    assert said(whole_turns(chat)) == [("user", "Send a message to my brother saying I am late")]


def test_a_turn_after_a_finished_reply_is_a_turn_of_its_own() -> None:
    chat = llm.ChatContext()
    chat.add_message(role="user", content="What time is it?")
    chat.add_message(role="assistant", content="It is noon.")
    chat.add_message(role="user", content="thanks")
    assert said(whole_turns(chat)) == said(chat)

    old = llm.ChatContext()
    old.add_message(role="user", content="hello", created_at=time.time() - 60)
    old.add_message(role="assistant", content="Hi", interrupted=True)
    old.add_message(role="user", content="anyone?")
    assert said(whole_turns(old)) == said(old)
