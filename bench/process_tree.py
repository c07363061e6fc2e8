"""A worker and its job processes, sampled while people talk: memory peaks and CPU used."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

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
