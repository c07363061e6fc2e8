"""How long the person waited for each reply, told to their page: the end of their speech
to the reply's first audio, as livekit measured it (``e2e_latency`` of the reply)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, ConversationItemAddedEvent
from livekit.agents.llm import ChatMessage

from pool import redact

logger = logging.getLogger(__name__)

TOPIC = "agent.reply_wait"


def reply_wait(item: ChatMessage) -> dict[str, Any] | None:
    """What the page shows beside a reply, or None for words that answer nobody (the
    greeting, an apology said in trouble)."""
    wait_s = item.metrics.get("e2e_latency")
    if item.role != "assistant" or wait_s is None:
        return None
    return {"wait_ms": round(wait_s * 1000), "text": item.text_content or ""}


def tell_reply_waits(session: AgentSession[Any], room: rtc.Room, person: str) -> None:
    """Send each reply's wait to ``person`` alone (a text stream on ``TOPIC``)."""
    sending: set[asyncio.Task[None]] = set()

    async def send(payload: dict[str, Any]) -> None:
        try:
            await room.local_participant.send_text(
                json.dumps(payload), topic=TOPIC, destination_identities=[person]
            )
        except Exception as error:  # the page misses one figure; the conversation goes on
            logger.debug("reply wait not sent: %s", redact(str(error))[:200])

    def on_item(event: ConversationItemAddedEvent) -> None:
        item = event.item
        if not isinstance(item, ChatMessage) or (payload := reply_wait(item)) is None:
            return
        if not room.isconnected():
            return
        task = asyncio.create_task(send(payload))
        sending.add(task)
        task.add_done_callback(sending.discard)

    session.on("conversation_item_added", on_item)
