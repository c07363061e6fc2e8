"""The benchmarks' AI provider in a process of its own: the OpenAI-compatible test server
over TLS behind the latency proxy, so their CPU work does not share a core's event loop
with the client being measured.

    python -m bench.ai_endpoint --rtt-ms 20 --delays '{"/chat/completions": 0.15}'

prints one JSON line (``url`` through the proxy, ``ca_file``, ``control``) and serves until
stdin closes. ``GET {control}/counters`` answers the connections the proxy accepted and the
requests per path.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import ssl
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from testbed.openai_server import OpenAIServer, system_text
from testbed.recognizer import Recognizer
from testbed.tcp_proxy import TcpProxy
from testbed.threaded import LoopThread

# system prompts of the calls that are not a reply to the person
_NOT_REPLIES = {
    "learning": ("Extract facts worth remembering", "Update the running summary"),
    "greeting": ("Write the first thing",),
}


def chat_kinds(server: OpenAIServer) -> dict[str, int]:
    """Chat requests by what they are: a reply to the person (the last message theirs),
    post-turn learning, a composed greeting, or other (a tool's follow-up, a greeting
    asked for by instructions)."""
    kinds: Counter[str] = Counter()
    for body in server.bodies("/chat/completions"):
        system = system_text(body)
        kind = next((k for k, p in _NOT_REPLIES.items() if system.startswith(p)), None)
        messages = body.get("messages") or [{}]
        if kind is None:
            kind = "reply" if messages[-1].get("role") == "user" else "other"
        kinds[kind] += 1
    return dict(kinds)


def serve(
    rtt_ms: float,
    delays: dict[str, float],
    identity: str | None,
    ca: str | None,
    *,
    http2: bool = False,
    corpus: list[str] | None = None,
    speech_s_per_char: float | None = None,
) -> None:
    """``identity``: the server's key and certificate chain (PEM) signed by ``ca``; without
    them a CA of its own is made. ``http2``: a chat endpoint that speaks HTTP/2 (hypercorn)
    instead of the aiohttp test server (HTTP/1.1). ``corpus``: the sentences a real
    recognizer hears. ``speech_s_per_char``: the agent's speech lasts as a voice's would."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if identity and ca:
        context.load_cert_chain(identity)
        ca_file = Path(ca)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="agent-ai-endpoint-"))
        authority = trustme.CA()
        identity_file = workdir / "server.pem"
        authority.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            str(identity_file)
        )
        identity = str(identity_file)
        context.load_cert_chain(identity)
        ca_file = workdir / "ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))

    chat: Callable[[], dict[str, int]] | None = None
    lags: Callable[[], list[float]] = list
    if http2:
        port, paths, stop_server = _serve_http2(identity, delays.get("/chat/completions", 0.0))
    else:
        server = OpenAIServer(ssl_context=context)
        server.delays = delays
        server.speech_s_per_char = speech_s_per_char
        if corpus:
            server.recognizer = Recognizer(corpus)
        server.start()
        port, paths, stop_server = server.port, server.paths, server.stop
        chat = lambda: chat_kinds(server)  # noqa: E731
        lags = lambda: list(server.transcript_lags_s)  # noqa: E731
    proxy = TcpProxy("127.0.0.1", port, rtt_s=rtt_ms / 1000).start()

    async def counters(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "connections": proxy.accepted,
                "requests": paths(),
                "chat": chat() if chat else {},
                "transcript_lags_s": lags(),
            }
        )

    thread = LoopThread("ai-endpoint-control")
    runner = web.AppRunner(web.Application(), access_log=None)
    runner.app.router.add_get("/counters", counters)
    thread.run(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    thread.run(site.start())
    control_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(
        json.dumps(
            {
                "url": f"https://127.0.0.1:{proxy.port}/v1",
                "ca_file": str(ca_file),
                "control": f"http://127.0.0.1:{control_port}",
            }
        ),
        flush=True,
    )
    # the provider's own long-lived heap out of the collector's way, as the agent's is: a
    # full collection mid-run would hold every conversation's responses at once
    gc.collect()
    gc.freeze()
    try:
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    finally:
        thread.run(runner.cleanup())
        thread.stop()
        proxy.stop()
        stop_server()


def _serve_http2(
    identity: str, delay_s: float
) -> tuple[int, Callable[[], dict[str, int]], Callable[[], None]]:
    """hypercorn over TLS, offering h2 by ALPN, in a thread of its own."""
    import asyncio

    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from bench.h2_chat import ChatApp
    from room.ports import free_tcp_port, wait_for_port

    app = ChatApp(delay_s)
    port = free_tcp_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile = config.keyfile = identity
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = config.errorlog = None
    thread = LoopThread("h2-chat")
    shutdown = asyncio.Event()

    async def run() -> None:
        await hypercorn_serve(app, config, shutdown_trigger=shutdown.wait)  # type: ignore[arg-type]

    assert thread.loop is not None
    future = asyncio.run_coroutine_threadsafe(run(), thread.loop)
    if not wait_for_port(port, 10):
        raise RuntimeError("the HTTP/2 chat endpoint did not start")

    def paths() -> dict[str, int]:
        return {"/v1/chat/completions": app.requests, "http_versions": len(app.http_versions)}

    def stop() -> None:
        assert thread.loop is not None
        thread.loop.call_soon_threadsafe(shutdown.set)
        future.result(10)
        thread.stop()

    return port, paths, stop


@dataclass
class AIEndpoint:
    """The endpoint process, from the benchmark's side."""

    process: subprocess.Popen[str]
    url: str
    ca_file: str
    control: str

    @classmethod
    def start(
        cls,
        rtt_ms: float,
        delays: dict[str, float],
        *,
        identity: Path | None = None,
        ca_file: Path | None = None,
        http2: bool = False,
        corpus: list[str] | None = None,
        speech_s_per_char: float | None = None,
    ) -> AIEndpoint:
        trust = ["--identity", str(identity), "--ca", str(ca_file)] if identity and ca_file else []
        trust += ["--http2"] if http2 else []
        trust += ["--corpus", json.dumps(corpus)] if corpus else []
        if speech_s_per_char is not None:
            trust += ["--speech-s-per-char", str(speech_s_per_char)]
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.ai_endpoint"),
                *("--rtt-ms", str(rtt_ms), "--delays", json.dumps(delays)),
                *trust,
            ],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        try:
            info = json.loads(process.stdout.readline())
            return cls(process, info["url"], info["ca_file"], info["control"])
        except (ValueError, KeyError):
            process.kill()
            process.wait(10)
            raise RuntimeError("the AI endpoint process did not start") from None

    def counters(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.control}/counters", timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def env(self) -> dict[str, str]:
        """What a client process needs to reach it: the URL, and trust in its certificate."""
        return {"OPENAI_BASE_URL": self.url, "SSL_CERT_FILE": self.ca_file}

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ai_endpoint", description=__doc__)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--delays", default="{}", help="JSON: path suffix -> seconds")
    parser.add_argument("--identity", help="the server's key and certificate chain (PEM)")
    parser.add_argument("--ca", help="the CA that signed --identity")
    parser.add_argument("--http2", action="store_true", help="a chat endpoint over HTTP/2")
    parser.add_argument("--corpus", help="JSON list: the sentences a real recognizer hears")
    parser.add_argument("--speech-s-per-char", type=float, help="the agent's speech pace")
    args = parser.parse_args()
    os.environ.pop("SSL_CERT_FILE", None)
    serve(
        args.rtt_ms,
        json.loads(args.delays),
        args.identity,
        args.ca,
        http2=args.http2,
        corpus=json.loads(args.corpus) if args.corpus else None,
        speech_s_per_char=args.speech_s_per_char,
    )


if __name__ == "__main__":
    main()
