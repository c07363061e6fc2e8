"""A worker and its job processes, sampled while people talk: memory peaks and CPU used."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import select
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class ProcessTree:
    root: int
    peak_rss_mb: float = 0.0
    peak_uss_mb: float = 0.0
    peak_pss_mb: float = 0.0
    peak_processes: int = 0  # job processes, the worker itself not counted
    cpu_s: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid: (first, last)
    peak_pss_mb_of: dict[int, float] = field(default_factory=dict)  # pid: its own peak
    peak_uss_mb_of: dict[int, float] = field(default_factory=dict)

    def sample(self) -> None:
        try:
            root = psutil.Process(self.root)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = uss = pss = 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                memory = process.memory_full_info()
                rss += memory.rss
                uss += memory.uss
                pss += memory.pss
                mine = self.peak_pss_mb_of.get(process.pid, 0.0)
                self.peak_pss_mb_of[process.pid] = max(mine, memory.pss / 2**20)
                mine = self.peak_uss_mb_of.get(process.pid, 0.0)
                self.peak_uss_mb_of[process.pid] = max(mine, memory.uss / 2**20)
                times = process.cpu_times()
                used = times.user + times.system
                first = self.cpu_s.get(process.pid, (used, used))[0]
                self.cpu_s[process.pid] = (first, used)
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)
        self.peak_uss_mb = max(self.peak_uss_mb, uss / 2**20)
        self.peak_pss_mb = max(self.peak_pss_mb, pss / 2**20)
        self.peak_processes = max(self.peak_processes, len(processes) - 1)

    def cpu_s_used(self) -> float:
        return sum(last - first for first, last in self.cpu_s.values())

    def cpu_pct(self, wall_s: float) -> float:
        return 100 * self.cpu_s_used() / wall_s if wall_s > 0 else 0.0


@dataclass(frozen=True)
class MachineTimes:
    """The machine's CPU seconds so far, all cores together: in all, idle, and the part the
    VM's host gave to others (steal: on a shared VM a busy neighbour slows every process)."""

    total: float
    idle: float
    steal: float


def machine_cpu_times() -> MachineTimes:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return MachineTimes(sum(times), idle, getattr(times, "steal", 0.0))


def stolen_pct(before: MachineTimes, after: MachineTimes) -> float | None:
    total = after.total - before.total
    return round(100 * (after.steal - before.steal) / total, 1) if total > 0 else None


def busy_pct(before: MachineTimes, after: MachineTimes) -> float | None:
    """How much of the machine was in use between the two: at 100 % every process waits its
    turn for a core, and each reply's wait grows with the queue, not with its own work."""
    total = after.total - before.total
    return round(100 * (1 - (after.idle - before.idle) / total), 1) if total > 0 else None


class TreeSampler:
    """A tree sampled every ``every_s`` by a process of its own, while the benchmark's people
    talk: one sample reads every process's smaps (about 80 ms of CPU for a worker and its job
    processes), which in the benchmark's process held the GIL that the people's audio runs
    under, delaying what they heard and said. ``tree`` holds the result once stopped."""

    def __init__(self, root: int, every_s: float = 0.5) -> None:
        self.root = root
        self.every_s = every_s
        self.tree = ProcessTree(root)
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> TreeSampler:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.process_tree", str(self.root), str(self.every_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            out, _ = process.communicate(input="", timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise
        sampled = json.loads(out)
        self.tree = ProcessTree(
            self.root,
            peak_rss_mb=sampled["peak_rss_mb"],
            peak_uss_mb=sampled["peak_uss_mb"],
            peak_pss_mb=sampled["peak_pss_mb"],
            peak_processes=sampled["peak_processes"],
            cpu_s={int(pid): (first, last) for pid, (first, last) in sampled["cpu_s"].items()},
            peak_pss_mb_of={int(pid): mb for pid, mb in sampled["peak_pss_mb_of"].items()},
            peak_uss_mb_of={int(pid): mb for pid, mb in sampled["peak_uss_mb_of"].items()},
        )


def main(root: int, every_s: float) -> None:
    """Sample until standard input closes, then print the tree as JSON."""
    tree = ProcessTree(root)
    while True:
        tree.sample()
        readable, _, _ = select.select([sys.stdin], [], [], every_s)
        if readable and not sys.stdin.read(1):
            break
    tree.sample()
    print(json.dumps(dataclasses.asdict(tree)), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
