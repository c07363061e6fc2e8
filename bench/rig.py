"""The benchmark's network: the local OpenAI-compatible server over TLS (certificates from
trustme), behind a latency-injecting proxy, so a fresh HTTPS request costs about three
round trips (TCP, TLS 1.3, request) and a pooled one about one."""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import trustme

from testbed.openai_server import OpenAIServer
from testbed.tcp_proxy import TcpProxy
from tools.settings import Settings


@dataclass
class Rig:
    server: OpenAIServer
    proxy: TcpProxy
    settings: Settings  # through the proxy
    direct: Settings  # straight to the server, for figures that count, not time
    workdir: Path
    rtt_ms: float
    identity: Path  # the server's key and chain, for an AI endpoint in another process
    ca_file: Path

    @property
    def base_url(self) -> str:
        return self.settings.openai_base_url or ""

    def close(self) -> None:
        self.proxy.stop()
        self.server.stop()


def start_rig(rtt_ms: float) -> Rig:
    workdir = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    identity = workdir / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(identity))
    # every client in this process (the pool's and the plugins' own) trusts the test CA
    os.environ["SSL_CERT_FILE"] = str(ca_file)

    server = OpenAIServer(ssl_context=server_ctx).start()
    proxy = TcpProxy("127.0.0.1", server.port, rtt_s=rtt_ms / 1000).start()
    direct = Settings(
        openai_api_key="sk-bench-not-a-real-key",
        openai_base_url=server.base_url,
        sqlite_path=str(workdir / "memory.db"),
        memory_outbox_path=str(workdir / "outbox.db"),
        health_tick_s=3600,
    )
    proxied = replace(direct, openai_base_url=f"https://127.0.0.1:{proxy.port}/v1")
    return Rig(server, proxy, proxied, direct, workdir, rtt_ms, identity, ca_file)
