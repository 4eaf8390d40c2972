"""CPU read from /proc, for the benchmarks: the whole machine's (how busy, how much the hypervisor took) and that of
chosen processes, sampled while they come and go."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_counters() -> tuple[float, float]:
    """(busy, steal) CPU seconds of all cores since boot, from /proc/stat. Steal = time the hypervisor gave
    our virtual CPUs to someone else: it counts as busy for us but is not work on this machine."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle) / CLK_TCK, steal / CLK_TCK


def machine_busy(seconds: float = 1.0) -> float:
    """Cores busy (all processes) over `seconds`: the load the benchmark would compete with."""
    try:
        before = cpu_counters()[0]
        time.sleep(seconds)
        return (cpu_counters()[0] - before) / seconds
    except OSError:  # no /proc/stat: say nothing is busy
        return 0.0


def wait_for_idle(max_wait: float) -> float:
    """Wait up to `max_wait` s for other work to calm down (< 0.2 cores busy); return the last reading."""
    busy = machine_busy()
    deadline = time.monotonic() + max_wait
    while busy > 0.2 and time.monotonic() < deadline:
        print(f"machine busy ({busy:.2f} of {os.cpu_count()} cores used by other processes); waiting ...", flush=True)
        busy = machine_busy(2.0)
    return busy


def processes() -> Iterator[tuple[int, int, int, float]]:
    """(pid, parent pid, process group, CPU seconds used) of every process, from /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        yield int(entry), int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK


class CpuSampler:
    """CPU seconds of the processes `name_of` names, over the `with` block. Processes come and go (gunicorn's
    max_requests, django-q2 recycling), so /proc is sampled every `every` s in a thread and the last value per
    pid is kept (a process's last few ms before it exits can be missed)."""

    every = 0.25

    def __init__(self) -> None:
        self.start: dict[int, float] = {}
        self.seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def name_of(self, pid: int, ppid: int, pgid: int) -> str | None:
        raise NotImplementedError

    def sample(self) -> dict[int, tuple[str, float]]:
        return {pid: (name, cpu) for pid, ppid, pgid, cpu in processes() if (name := self.name_of(pid, ppid, pgid))}

    def tick(self) -> None:
        self.seen.update(self.sample())

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()

    def __enter__(self) -> Any:
        self.seen = self.sample()
        self.start = {pid: cpu for pid, (_, cpu) in self.seen.items()}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.seen.update(self.sample())

    def used(self) -> Counter[str]:
        """CPU seconds per name over the block."""
        used: Counter[str] = Counter()
        for pid, (name, cpu) in self.seen.items():
            used[name] += cpu - self.start.get(pid, 0.0)
        return used
