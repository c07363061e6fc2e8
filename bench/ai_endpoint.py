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
import json
import os
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from tests.support.openai_server import OpenAIServer
from tests.support.tcp_proxy import TcpProxy
from tests.support.threaded import LoopThread


def serve(rtt_ms: float, delays: dict[str, float], identity: str | None, ca: str | None) -> None:
    """``identity``: the server's key and certificate chain (PEM) signed by ``ca``; without
    them a CA of its own is made."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if identity and ca:
        context.load_cert_chain(identity)
        ca_file = Path(ca)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="agent-ai-endpoint-"))
        authority = trustme.CA()
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        ca_file = workdir / "ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))

    server = OpenAIServer(ssl_context=context)
    server.delays = delays
    server.start()
    proxy = TcpProxy("127.0.0.1", server.port, rtt_s=rtt_ms / 1000).start()

    async def counters(request: web.Request) -> web.Response:
        return web.json_response({"connections": proxy.accepted, "requests": server.paths()})

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
    try:
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    finally:
        thread.run(runner.cleanup())
        thread.stop()
        proxy.stop()
        server.stop()


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
    ) -> AIEndpoint:
        trust = ["--identity", str(identity), "--ca", str(ca_file)] if identity and ca_file else []
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
        line = process.stdout.readline()
        if not line:
            process.wait(10)
            raise RuntimeError("the AI endpoint process did not start")
        info = json.loads(line)
        return cls(process, info["url"], info["ca_file"], info["control"])

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
    args = parser.parse_args()
    os.environ.pop("SSL_CERT_FILE", None)
    serve(args.rtt_ms, json.loads(args.delays), args.identity, args.ca)


if __name__ == "__main__":
    main()
