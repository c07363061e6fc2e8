"""`make room`'s page in a real browser: Debian's Chromium driven by Playwright, a fake
microphone playing espeak-ng speech, the worker as a process, and the local LiveKit server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from livekit import api

from room.livekit_server import API_KEY, API_SECRET, LiveKitServer, ensure_binary
from room.ports import free_tcp_port
from room.rooms import RoomConfig
from room.web import LIVEKIT_CLIENT, create_app
from testbed.openai_server import OpenAIServer, Rule, last_user_text
from testbed.threaded import LoopThread
from testbed.waiting import wait_until
from testbed.worker import Worker, room_env
from tests.support.services import missing
from tools.dispatch import dispatch_metadata, ready_room_metadata

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
# the README's picture is refreshed only when asked: ROOM_SCREENSHOT=docs/room.png
SCREENSHOT = os.environ.get("ROOM_SCREENSHOT")
RATE = 22050  # espeak-ng's own rate


def _require_browser() -> None:
    if not CHROMIUM.exists():
        missing("Debian's chromium is not installed (make test installs it as root).")
    if not LIVEKIT_CLIENT.exists():
        missing("room/node_modules is missing (make test runs npm ci in room/).")
    if shutil.which("espeak-ng") is None:
        missing("espeak-ng is not installed (make test installs it as root).")
    try:
        ensure_binary(quiet=True)
    except Exception as exc:
        missing(f"no livekit-server: {exc}")


def microphone_wav(path: Path, parts: list[str | float]) -> Path:
    """A WAV for Chromium's fake microphone: sentences spoken by espeak-ng, and pauses."""
    chunks = []
    for part in parts:
        if isinstance(part, float):
            chunks.append(np.zeros(int(RATE * part), dtype=np.int16))
            continue
        spoken = path.with_suffix(".part.wav")
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(spoken), part], check=True, timeout=30)
        with wave.open(str(spoken), "rb") as source:
            assert source.getframerate() == RATE
            chunks.append(np.frombuffer(source.readframes(source.getnframes()), dtype=np.int16))
        spoken.unlink()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(np.concatenate(chunks).tobytes())
    return path


class Page:
    """The web app in this process, on a free loopback port."""

    def __init__(self, config: RoomConfig) -> None:
        self.config = config
        self.port = free_tcp_port()
        self._thread = LoopThread("room-web")
        self._runner = web.AppRunner(create_app(config), access_log=None)

        async def start() -> None:
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._thread.run(start())

    @property
    def url(self) -> str:
        """The address `make room` prints, with the run's key."""
        return self.config.page_url("127.0.0.1", self.port)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._thread.run(self._runner.cleanup())
        self._thread.stop()


@pytest.fixture
def stack(openai_server: OpenAIServer, tmp_path: Path) -> Iterator[tuple[Worker, Page]]:
    """Its own LiveKit server (the last test stops it), a worker and the page."""
    _require_browser()
    livekit = LiveKitServer().start()
    worker = Worker(livekit, tmp_path, **room_env(openai_server.base_url, OPENAI_API_KEY="sk-t"))
    try:
        worker.start()
        page = Page(RoomConfig(livekit.url, API_KEY, API_SECRET, agent_name=worker.agent_name))
        try:
            yield worker, page
        finally:
            page.stop()
    finally:
        worker.terminate()
        livekit.stop()


async def launch(playwright: Any, args: list[str]) -> Any:
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--autoplay-policy=no-user-gesture-required",
            *(["--no-sandbox"] if os.geteuid() == 0 else []),
            *args,
        ],
    )


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """Chromium with a fake microphone that says two sentences, once, and allows it."""
    from playwright.async_api import async_playwright

    wav = microphone_wav(
        tmp_path / "microphone.wav",
        [6.0, "My name is Ada.", 7.0, "How are your connections doing?", 8.0],
    )
    async with async_playwright() as playwright:
        chromium = await launch(
            playwright,
            [
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}%noloop",
            ],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def until(page: Any, expression: str, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await page.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.2)
    state = await page.evaluate("JSON.stringify(window.voiceRoom)")
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}: {state}")


async def test_a_conversation_in_the_browser_with_the_pool_panel(
    stack: tuple[Worker, Page], browser: Any, server: OpenAIServer, tmp_path: Path
) -> None:
    worker, web_page = stack
    server.transcripts.extend(["my name is Ada", "how are your connections doing"])
    server.script(
        Rule(text="Nice to meet you, Ada.", when=lambda b: "my name is Ada" in last_user_text(b)),
        Rule(text="They are all healthy.", when=lambda b: "connections" in last_user_text(b)),
    )
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    await page.goto(web_page.url)
    await page.fill("#name", "Ada")
    await page.click("#talk")
    await until(page, "window.voiceRoom.state === 'in-call'", 20, "the call")
    # the greeting: in the transcript, and its sound reaching the page
    await until(
        page, "window.voiceRoom.transcript.some(l => l.speaker === 'agent')", 30, "the greeting"
    )
    await until(page, "window.voiceRoom.agentPeakRms > 0.01", 20, "the greeting's audio")
    # the fake microphone's first sentence, transcribed and answered
    await until(
        page,
        "window.voiceRoom.transcript.some(l => l.speaker === 'you' && /ada/i.test(l.text))",
        40,
        "the person's words",
    )
    await until(
        page,
        "window.voiceRoom.transcript.some(l => l.speaker === 'agent' && /Nice to/.test(l.text))",
        30,
        "the reply",
    )
    # the wait before it, beside it: the end of the person's words to its first audio
    wait_ms = await until(
        page,
        "window.voiceRoom.transcript.find(l => /Nice to/.test(l.text) && l.waitMs > 0)?.waitMs",
        30,
        "the reply's wait",
    )
    shown = await page.locator("#transcript li.agent .wait").all_text_contents()
    assert f"{wait_ms / 1000:.2f} s" in shown, shown
    greeting = await page.evaluate("window.voiceRoom.transcript.find(l => l.speaker === 'agent')")
    assert greeting["waitMs"] is None  # the greeting answers nobody
    # the pool panel, over LiveKit RPC, with the agent's real numbers
    stats = await until(
        page,
        "window.voiceRoom.stats?.resources['openai.llm']?.requests >= 1 && window.voiceRoom.stats",
        20,
        "pool stats over RPC",
    )
    llm = stats["resources"]["openai.llm"]
    assert llm["requests"] >= 1 and llm["health"] == "HEALTHY"
    reused = stats["resources"]["openai"]["connections"]["reused"]
    shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "room.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    await until(
        page,
        "window.voiceRoom.transcript.some(l => l.speaker === 'agent' && /healthy/.test(l.text))",
        40,
        "the second reply",
    )
    await until(
        page,
        f"window.voiceRoom.stats.resources.openai.connections.reused > {reused}",
        20,
        "reused connections after a second turn",
    )
    rows = await page.locator("#pool-rows tr").count()
    assert rows >= 3

    await page.click("#leave")
    await until(page, "window.voiceRoom.state === 'left'", 10, "leaving")
    assert errors == [], errors
    # the agent leaves with the person, and the job ends without an error
    async with api.LiveKitAPI(worker.livekit.http_url, API_KEY, API_SECRET) as lk:

        async def everyone_left() -> bool:
            rooms = (await lk.room.list_rooms(api.ListRoomsRequest())).rooms
            return all(r.num_participants == 0 for r in rooms)

        await wait_until(everyone_left, 30, what="the agent to leave", every_s=0.3)
    output = worker.output()
    assert "Traceback" not in output and '"level": "ERROR"' not in output
    await context.close()


async def test_the_page_says_in_words_when_the_server_is_down(
    stack: tuple[Worker, Page], browser: Any
) -> None:
    worker, web_page = stack
    page = await (await browser.new_context()).new_page()
    await page.goto(web_page.url)
    worker.livekit.stop()
    await page.fill("#name", "Ada")
    await page.click("#talk")
    message = await until(
        page, "!document.getElementById('error').hidden && window.voiceRoom.errors[0]", 30, "error"
    )
    assert message.startswith(f"The LiveKit server at {worker.livekit.url} is not reachable")
    assert "Error:" not in await page.inner_text("#error")
    assert await page.evaluate("window.voiceRoom.state") == "idle"
    assert await page.is_enabled("#talk")


async def test_a_token_is_given_to_the_page_alone_and_bad_requests_get_a_sentence(
    livekit: LiveKitServer,
) -> None:
    import aiohttp

    web_page = Page(RoomConfig(livekit.url, API_KEY, API_SECRET, agent_name="agent-x"))
    endpoint = web_page.origin + "/token"
    key = {"X-Room-Key": web_page.config.page_key}
    refusals = [
        # (headers, body, status, the start of the sentence)
        ({}, b'{"name": "Ada"}', 403, "The page's key is missing or wrong"),
        ({"X-Room-Key": "guessed"}, b'{"name": "Ada"}', 403, "The page's key is missing"),
        # a form on another site, posting where a browser needs no preflight
        (key | {"Origin": "https://evil.example"}, b'{"name": "Ada"}', 403, "Tokens are given"),
        (key | {"Content-Type": "text/plain"}, b'{"name": "Ada"}', 415, "Send the name as JSON"),
        (key | {"Content-Type": "application/json; charset=klingon"}, b"{}", 400, "The request"),
        (key | {"Content-Type": "application/json"}, b'{"name": "<script>"}', 400, "A name is"),
    ]
    answers = []
    try:
        async with aiohttp.ClientSession() as http:
            for headers, body, _, _ in refusals:
                async with http.post(endpoint, data=body, headers=headers) as response:
                    answers.append((response.status, (await response.json())["error"]))
            headers = key | {"Origin": web_page.origin}
            async with http.post(endpoint, json={"name": "Ada"}, headers=headers) as response:
                assert response.status == 200
                token = await response.json()
    finally:
        web_page.stop()
    for (_, _, status, sentence), (got_status, error) in zip(refusals, answers, strict=True):
        assert (got_status, error[: len(sentence)]) == (status, sentence)
    assert set(token) == {"url", "room", "token"}
    assert API_SECRET not in str(token)
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(token["token"])
    assert claims.identity == "Ada" and claims.video and claims.video.room == token["room"]
    # the agent was sent when the token was given, naming Ada; the token sends no second one
    assert not (claims.room_config and claims.room_config.agents)
    async with api.LiveKitAPI(livekit.http_url, API_KEY, API_SECRET) as lk:
        dispatches = await lk.agent_dispatch.list_dispatch(token["room"])
        rooms = await lk.room.list_rooms(api.ListRoomsRequest())
        # the page's ready room (no agent-x ever came to it) is for nobody yet
        for_people = [
            r.name
            for r in rooms.rooms
            if r.name.startswith("voice-")
            and all(
                d.metadata != ready_room_metadata()
                for d in await lk.agent_dispatch.list_dispatch(r.name)
            )
        ]
    # with no room ready, one was opened for Ada, naming her; the token sends no second agent
    assert [(d.agent_name, d.metadata) for d in dispatches] == [
        ("agent-x", dispatch_metadata("Ada"))
    ]
    # a refused request opened no room
    assert for_people == [token["room"]]


async def test_with_the_livekit_server_down_the_page_is_told_in_a_sentence() -> None:
    import aiohttp

    web_page = Page(RoomConfig("ws://127.0.0.1:9", API_KEY, API_SECRET, agent_name="agent-x"))
    headers = {"X-Room-Key": web_page.config.page_key, "Origin": web_page.origin}
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                web_page.origin + "/token", json={"name": "Ada"}, headers=headers
            ) as response,
        ):
            status, body = response.status, await response.json()
    finally:
        web_page.stop()
    assert status == 503
    assert body == {
        "error": "The LiveKit server at ws://127.0.0.1:9 is not reachable. "
        "Is `make room` still running?"
    }


async def test_a_denied_microphone_and_an_agent_that_never_comes_are_said_in_words(
    livekit: LiveKitServer,
) -> None:
    """No worker serves this agent name; the second browser never grants the microphone."""
    from playwright.async_api import async_playwright

    _require_browser()
    web_page = Page(RoomConfig(livekit.url, API_KEY, API_SECRET, agent_name="nobody-serves"))
    try:
        async with async_playwright() as playwright:
            allowing = await launch(
                playwright, ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
            )
            denying = await launch(playwright, ["--use-fake-device-for-media-stream"])
            try:
                waiting = await (await allowing.new_context()).new_page()
                await waiting.goto(web_page.url)
                await waiting.fill("#name", "Ada")
                await waiting.click("#talk")
                alone = await until(waiting, "window.voiceRoom.errors[0]", 30, "the agent error")
                assert alone.startswith(
                    "The agent did not join within 10 s. Is the worker running?"
                )

                refused = await (await denying.new_context(permissions=[])).new_page()
                await refused.goto(web_page.url)
                await refused.fill("#name", "Ada")
                await refused.click("#talk")
                denied = await until(refused, "window.voiceRoom.errors[0]", 30, "the mic error")
                assert denied.startswith("Microphone permission was denied.")
                assert await refused.evaluate("window.voiceRoom.state") == "idle"
            finally:
                await allowing.close()
                await denying.close()
    finally:
        web_page.stop()
