"""A throwaway PostgreSQL server: a fresh cluster in a temporary directory, on a free
loopback port, stopped and deleted afterwards.

pytest-postgresql drives ``pg_ctl``, which refuses to run as root, and its data directory
lives under pytest's private (0700) temp dir that the ``postgres`` user cannot enter; CI
runs as root. So this starts ``postgres`` itself, as the ``postgres`` user when we are
root, and keeps its pid to stop it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from room import processes
from room.ports import free_tcp_port


class ServiceMissingError(RuntimeError):
    """A server program this test needs is not installed."""


def postgres_bindir() -> Path:
    """Debian keeps the server programs out of PATH, under /usr/lib/postgresql/N/bin."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise ServiceMissingError(
        "PostgreSQL is not installed (no postgres program); `make test` installs the Debian "
        "package postgresql when run as root."
    )


class PostgresServer:
    """``with PostgresServer() as pg: pg.dsn`` is a superuser DSN with no password."""

    def __init__(
        self,
        *,
        port: int | None = None,
        datadir: Path | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        self.options = options or {}
        self.bindir = postgres_bindir()
        self.port = port or free_tcp_port()
        self._tmp = Path(tempfile.mkdtemp(prefix="agent-pg-"))
        self.datadir = datadir or self._tmp / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self._as = _unprivileged_user()
        if self._as is not None:
            # the server runs as postgres: it must own its directory
            os.chown(self._tmp, self._as.pw_uid, self._as.pw_gid)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str) -> None:
        """Run one of the cluster programs (initdb, pg_basebackup, pg_ctl) as the server's user."""
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=120,
            user=self._as.pw_uid if self._as else None,
            group=self._as.pw_gid if self._as else None,
        )

    def init(self) -> None:
        self.run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "--no-sync")

    @classmethod
    def replica_of(cls, primary: PostgresServer) -> PostgresServer:
        """A streaming replica of ``primary`` (``pg_basebackup -R``), not yet started."""
        replica = cls()
        replica.run(
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(replica.datadir), "-R", "-X", "stream", "--no-sync"),
        )
        return replica

    def start(self) -> PostgresServer:
        if not (self.datadir / "PG_VERSION").exists():
            self.init()
        options = {
            "listen_addresses": "127.0.0.1",
            # a test server: durability is not what is tested against it
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **self.options,
        }
        command = [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port)]
        command += ["-k", str(self._tmp)]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        log = open(self._tmp / "postgres.log", "ab")  # noqa: SIM115 - the server keeps it open
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._as.pw_uid if self._as else None,
            group=self._as.pw_gid if self._as else None,
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.kill()  # a server that never became ready must not outlive the attempt
            raise
        return self

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                if self._accepts_queries():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not answer within {timeout_s:.0f} s.")

    def _accepts_queries(self) -> bool:
        ready = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            timeout=10,
        )
        return ready.returncode == 0

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self._tmp / "postgres.log").read_text().splitlines()[-lines:])
        return ""

    def stop(self, *, fast: bool = True) -> None:
        """Stop the server by its pid: SIGINT is PostgreSQL's fast shutdown."""
        process, self.process = self.process, None
        processes.stop(process, signal.SIGINT if fast else signal.SIGTERM, wait_s=30)

    def kill(self) -> None:
        """Lose the server at once, as when its host dies."""
        process, self.process = self.process, None
        processes.kill(process)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceMissingError(
            "PostgreSQL refuses to run as root and there is no postgres user; install the "
            "Debian package postgresql, which creates it."
        ) from None


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A superuser DSN of a fresh server, for the length of the block."""
    with PostgresServer() as server:
        yield server.dsn
