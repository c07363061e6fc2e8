"""An OpenAI-compatible chat endpoint that speaks HTTP/2 (as OpenAI's API does), served
by hypercorn: ``POST /v1/chat/completions`` answers a fixed completion after the configured
delay. Only what the ``parallel`` figure needs to measure multiplexing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ChatApp:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.requests = 0
        self.http_versions: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.requests += 1
        self.http_versions.add(scope.get("http_version", "?"))
        if scope["path"] != "/v1/chat/completions":
            await _json(send, 404, {"error": {"message": "not found"}})
            return
        await asyncio.sleep(self.delay_s)
        await _json(
            send,
            200,
            {
                "id": "chatcmpl-h2",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})
