"""Free loopback ports for the local servers (`make room`, the tests, the benchmarks)."""

from __future__ import annotations

import random
import socket

# Below Linux's ephemeral range (32768-60999): a port the kernel handed out by `bind(0)` is
# also what it hands to the next outgoing connection, which can take it before the server
# it was picked for binds it ("address already in use" under a busy suite).
PORTS = range(20000, 32768)


def _free_port(kind: socket.SocketKind) -> int:
    for port in random.sample(PORTS, 200):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                # every address: some servers (the livekit worker's HTTP) bind 0.0.0.0
                sock.bind(("", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free {kind.name} port in {PORTS.start}-{PORTS.stop - 1}")


def free_tcp_port() -> int:
    return _free_port(socket.SOCK_STREAM)


def free_udp_port() -> int:
    return _free_port(socket.SOCK_DGRAM)


def wait_for_port(port: int, timeout_s: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False
