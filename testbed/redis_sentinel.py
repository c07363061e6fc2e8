"""A throwaway Redis master, a replica of it and three sentinels watching them, from
Debian's ``redis-server`` (``--sentinel`` mode), on free loopback ports; stopped by pid."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from room import processes
from room.ports import free_tcp_port, wait_for_port

from .postgres import ServiceMissingError

MASTER_NAME = "agentcache"


class RedisSentinelCluster:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceMissingError(
                "redis-server is not installed; `make test` installs it when run as root."
            )
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="agent-sentinel-"))
        self.master_port = free_tcp_port()
        self.replica_port = free_tcp_port()
        self.sentinel_ports = [free_tcp_port() for _ in range(3)]
        self.servers: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def sentinels(self) -> tuple[tuple[str, int], ...]:
        return tuple(("127.0.0.1", port) for port in self.sentinel_ports)

    def _spawn(self, port: int, *args: str) -> None:
        log = open(self.dir / f"{port}.log", "ab")  # noqa: SIM115 - the server keeps it open
        self.servers[port] = subprocess.Popen(
            [self.binary, *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
        )
        log.close()
        if not wait_for_port(port, 10):
            raise RuntimeError(f"redis on {port} did not start: {self.log(port)}")

    def start(self) -> RedisSentinelCluster:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._spawn(self.master_port, "--port", str(self.master_port), *common)
        self._spawn(
            self.replica_port,
            *("--port", str(self.replica_port), *common),
            *("--replicaof", "127.0.0.1", str(self.master_port)),
        )
        for port in self.sentinel_ports:
            config = self.dir / f"sentinel-{port}.conf"  # sentinels rewrite their own config
            config.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self._spawn(port, str(config), "--sentinel")
        self._wait_for_sentinels()
        return self

    def _wait_for_sentinels(self, timeout_s: float = 20.0) -> None:
        """Until every sentinel knows the replica, so that a failover has somewhere to go."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = 0
            for port in self.sentinel_ports:
                client = redis.Redis(port=port, socket_timeout=1)
                try:
                    replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                    others = client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
                    ready += bool(replicas) and len(others) >= 2
                except redis.RedisError:
                    pass
                finally:
                    client.close()
            if ready == len(self.sentinel_ports):
                return
            time.sleep(0.2)
        raise RuntimeError("the sentinels did not discover the replica and each other")

    def master_address(self) -> tuple[str, int]:
        client = redis.Redis(port=self.sentinel_ports[0], socket_timeout=1)
        try:
            host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        finally:
            client.close()
        return (host.decode() if isinstance(host, bytes) else host, int(port))

    def kill_master(self) -> None:
        processes.kill(self.servers.pop(self.master_port))

    def log(self, port: int) -> str:
        path = self.dir / f"{port}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        for process in self.servers.values():
            processes.stop(process)
        self.servers.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
