"""The web page of the local voice room: the page, its static files, livekit-client from
``node_modules``, and ``POST /token``, which signs a LiveKit access token on the server so
the API secret never reaches the page, and gives the person a room with the agent in it or
on its way (``ready_room.py``)."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from livekit import api

from .ready_room import ReadyRoom
from .rooms import RoomConfig, open_room

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
LIVEKIT_CLIENT = HERE / "node_modules" / "livekit-client" / "dist" / "livekit-client.esm.mjs"
# a person's name is their identity, and memory follows it: keep it printable and short
NAME = re.compile(r"^[\w][\w .'-]{0,63}$")


KEY_HEADER = "X-Room-Key"


def refused(status: int, sentence: str) -> web.Response:
    return web.json_response({"error": sentence}, status=status)


async def issue_token(request: web.Request) -> web.Response:
    """A token for the name a person typed, for the page itself only: its key, its own
    origin, JSON. The name becomes the memory user, so this is for a machine of your own;
    a deployment gets identities from its own authenticated token issuer."""
    config: RoomConfig = request.app[CONFIG]
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return refused(403, "Tokens are given to this page only, not to another site.")
    if not secrets.compare_digest(
        request.headers.get(KEY_HEADER, "").encode(), config.page_key.encode()
    ):
        return refused(
            403,
            "The page's key is missing or wrong: open the address `make room` printed, "
            "which ends in #key=…",
        )
    if request.content_type != "application/json":
        return refused(415, 'Send the name as JSON: {"name": "Ada"}.')
    try:
        body = await request.json()
    except (ValueError, LookupError, UnicodeDecodeError):
        return refused(400, "The request body is not JSON in a known character set.")
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not NAME.match(name.strip()):
        return refused(
            400,
            "A name is 1 to 64 letters, digits, spaces, dots, dashes or apostrophes, starting "
            "with a letter or digit.",
        )
    try:
        ready = request.app.get(READY)
        if ready is not None:
            given = await ready.take(name.strip())
        else:
            given = await open_room(config, request.app[LIVEKIT], name.strip())
    except (api.TwirpError, aiohttp.ClientError, TimeoutError):
        # the sentence the page says when it cannot connect: the same trouble
        return refused(
            503,
            f"The LiveKit server at {config.livekit_url} is not reachable. "
            "Is `make room` still running?",
        )
    return web.json_response(given, headers={"Cache-Control": "no-store"})


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def livekit_client(request: web.Request) -> web.StreamResponse:
    if not LIVEKIT_CLIENT.exists():
        return web.Response(
            status=503,
            text="livekit-client is not installed: run `npm ci` in room/ (make room does).",
        )
    return web.FileResponse(LIVEKIT_CLIENT, headers={"Content-Type": "text/javascript"})


CONFIG = web.AppKey("config", RoomConfig)
LIVEKIT = web.AppKey("livekit", api.LiveKitAPI)
READY = web.AppKey("ready", ReadyRoom)


def create_app(config: RoomConfig) -> web.Application:
    app = web.Application()
    app[CONFIG] = config

    async def livekit_api(app: web.Application) -> AsyncIterator[None]:
        # one HTTP session to the server's API for the page's life
        timeout = aiohttp.ClientTimeout(total=5)
        async with api.LiveKitAPI(
            config.api_url, config.api_key, config.api_secret, timeout=timeout
        ) as livekit:
            app[LIVEKIT] = livekit
            if config.agent_name:  # a room with the agent in it, for whoever asks next
                ready = app[READY] = ReadyRoom(config, livekit)
                ready.start()
            try:
                yield
            finally:
                if READY in app:
                    await app[READY].aclose()

    app.cleanup_ctx.append(livekit_api)
    app.router.add_get("/", page)
    app.router.add_post("/token", issue_token)
    app.router.add_get("/vendor/livekit-client.esm.mjs", livekit_client)
    app.router.add_static("/static/", STATIC)
    return app
