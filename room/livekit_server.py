"""A local LiveKit server for the room tests, the load benchmark and `make room`.

The binary comes from, in order: ``LIVEKIT_SERVER_BIN``, ``livekit-server`` on PATH, or a
build of the pinned Go module into a cache directory outside the repository, made once
per machine (about 5 minutes on 2 cores) and reused after.

Pinned to v1.13.5: v1.13.6 to v1.13.11 ``replace`` pion's webrtc/dtls/ice with LiveKit
forks in their go.mod, which ``go install`` refuses and the module proxy does not serve.

    python -m room.livekit_server build    # build (or find) the binary, print its path
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from room import processes
from room.ports import free_tcp_port, free_udp_port

VERSION = "v1.13.5"
MODULE = "github.com/livekit/livekit-server/cmd/server"
API_KEY = "devkey"
# --dev's own secret ("secret") is too short for a 256-bit HMAC; PyJWT warns on every token
API_SECRET = "local-livekit-secret-for-tests-and-make-room"


class LiveKitUnavailableError(RuntimeError):
    """No server binary, and no Go toolchain to build one."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "remembering-voice-agent" / f"livekit-server-{VERSION}"


def find_binary() -> Path | None:
    explicit = os.environ.get("LIVEKIT_SERVER_BIN")
    if explicit:
        return Path(explicit)
    on_path = shutil.which("livekit-server")
    if on_path:
        return Path(on_path)
    built = cache_dir() / "server"
    return built if built.exists() else None


def ensure_binary(*, quiet: bool = False) -> Path:
    """The server binary, built with ``go install`` on first use."""
    found = find_binary()
    if found is not None:
        return found
    go = shutil.which("go")
    if go is None:
        raise LiveKitUnavailableError(
            "No livekit-server binary (LIVEKIT_SERVER_BIN, PATH or the build cache) and no Go "
            "toolchain to build one; install Go or set LIVEKIT_SERVER_BIN."
        )
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    lock = target / ".building"
    # two test runs at once must not build into the same directory
    with open(lock, "w") as handle:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX)
        if (target / "server").exists():
            return target / "server"
        if not quiet:
            print(f"building livekit-server {VERSION} into {target} (once per machine)...")
        env = {**os.environ, "GOBIN": str(target)}
        result = subprocess.run(
            [go, "install", f"{MODULE}@{VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if result.returncode != 0:
            raise LiveKitUnavailableError(
                f"go install {MODULE}@{VERSION} failed: {result.stderr.strip()[-2000:]}"
            )
    return target / "server"


def loopback_config(port: int, tcp_port: int, udp_port: int, redis: str | None = None) -> str:
    """Everything on 127.0.0.1, media included (``--dev`` alone offers every interface).
    With ``redis`` (``host:port/db``) the node joins the others that share it: LiveKit's
    distributed mode, where rooms, participants and agent jobs cross nodes."""
    cluster = {}
    if redis is not None:
        address, _, db = redis.partition("/")
        cluster = {"redis": {"address": address, "db": int(db or 0)}}
    return json.dumps(
        {
            **cluster,
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "rtc": {
                "tcp_port": tcp_port,
                "udp_port": udp_port,
                "use_external_ip": False,
                "node_ip": "127.0.0.1",
                "enable_loopback_candidate": True,
                "interfaces": {"includes": ["lo"]},
            },
            "keys": {API_KEY: API_SECRET},
            "logging": {"level": "info"},
        }
    )


class LiveKitServer:
    """``with LiveKitServer() as lk: lk.url`` — a dev-mode server on free loopback ports."""

    def __init__(
        self, binary: Path | None = None, *, port: int | None = None, redis: str | None = None
    ) -> None:
        self.binary = binary or ensure_binary()
        self.redis = redis  # host:port/db shared with the other nodes of a cluster
        self.port = port or free_tcp_port()
        self.tcp_port = free_tcp_port()
        self.udp_port = free_udp_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="agent-livekit-"))
        self.log_path = self._dir / "livekit.log"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def node_id(self) -> str | None:
        """This node's id in a cluster, from the line it logs at start."""
        found = re.search(r'"nodeID": "([^"]+)"', self.log())
        return found.group(1) if found else None

    def start(self, timeout_s: float = 30.0) -> LiveKitServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server keeps it open
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--dev",
                "--config-body",
                loopback_config(self.port, self.tcp_port, self.udp_port, self.redis),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"livekit-server exited at start:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.http_url, timeout=1) as response,
            ):
                if response.status == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"livekit-server did not answer within {timeout_s:.0f} s.")

    def stop(self) -> None:
        process, self.process = self.process, None
        processes.stop(process)

    def kill(self) -> None:
        process, self.process = self.process, None
        processes.kill(process)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def __enter__(self) -> LiveKitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[1:] != ["build"]:
        print("usage: python -m room.livekit_server build", file=sys.stderr)
        return 2
    try:
        print(ensure_binary())
    except LiveKitUnavailableError as exc:
        print(f"livekit-server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
