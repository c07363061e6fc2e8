"""The web page of the local voice room: the page, its static files, livekit-client from
``node_modules``, and ``POST /token``, which signs a LiveKit access token on the server so
the API secret never reaches the page."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from livekit import api

from tools.dispatch import dispatch_metadata

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
LIVEKIT_CLIENT = HERE / "node_modules" / "livekit-client" / "dist" / "livekit-client.esm.mjs"
# a person's name is their identity, and memory follows it: keep it printable and short
NAME = re.compile(r"^[\w][\w .'-]{0,63}$")
TOKEN_TTL = timedelta(hours=2)


KEY_HEADER = "X-Room-Key"


@dataclass(frozen=True)
class RoomConfig:
    livekit_url: str  # as the browser reaches it
    api_key: str
    api_secret: str = field(repr=False)
    agent_name: str | None = None  # dispatch this agent to each new room by name
    # the page's key for this run, in the address `make room` prints (as local notebook
    # servers do): whoever reaches the port without it gets no token
    page_key: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)

    def page_url(self, host: str, port: int) -> str:
        # in the fragment, which the browser never sends on, so no log or Referer has it
        return f"http://{host}:{port}/#key={self.page_key}"


def access_token(config: RoomConfig, name: str, room: str) -> str:
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
    )
    token = (
        api.AccessToken(config.api_key, config.api_secret)
        .with_identity(name)
        .with_name(name)
        .with_grants(grants)
        .with_ttl(TOKEN_TTL)
    )
    if config.agent_name:
        token = token.with_room_config(
            api.RoomConfiguration(
                agents=[
                    # naming the person: the agent loads their memories while it connects
                    api.RoomAgentDispatch(
                        agent_name=config.agent_name, metadata=dispatch_metadata(name)
                    )
                ]
            )
        )
    return token.to_jwt()


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
    name = name.strip()
    room = f"voice-{secrets.token_hex(4)}"
    return web.json_response(
        {"url": config.livekit_url, "room": room, "token": access_token(config, name, room)},
        headers={"Cache-Control": "no-store"},
    )


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


def create_app(config: RoomConfig) -> web.Application:
    app = web.Application()
    app[CONFIG] = config
    app.router.add_get("/", page)
    app.router.add_post("/token", issue_token)
    app.router.add_get("/vendor/livekit-client.esm.mjs", livekit_client)
    app.router.add_static("/static/", STATIC)
    return app
