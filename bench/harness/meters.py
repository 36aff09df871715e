"""CPU counters (of a process, of this process, of the machine) and what the machine is."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any


def own_cpu() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meters:
    """CPU counters read at one instant: the milter process, this process, the machine."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, milter_pid: int) -> None:
        """Read the counters now."""
        self.milter = self._process_cpu(milter_pid)
        self.own = own_cpu()
        self.idle, self.cores = self._machine_idle()
        self.when = time.monotonic()

    def busy_since(self, before: Meters) -> float:
        """CPU seconds all cores spent not idle since ``before``.

        Computed as elapsed time x cores - idle time: the kernel measures idle time exactly,
        whereas its busy counters are sampled at timer ticks, which misses the short bursts
        of work that a timer (such as a delayed ACK) sets off right after a tick."""
        return max(0.0, (self.when - before.when) * self.cores - (self.idle - before.idle))

    @classmethod
    def _process_cpu(cls, pid: int) -> float:
        """User + system CPU seconds of a process and all its threads."""
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = text.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / cls.TICK

    @classmethod
    def _machine_idle(cls) -> tuple[float, int]:
        """(idle + iowait seconds summed over cores, number of cores) from /proc/stat."""
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return 0.0, 0
        first = lines[0].split()  # cpu user nice system idle iowait irq softirq steal ...
        cores = sum(1 for line in lines[1:] if line.startswith("cpu"))
        return (int(first[4]) + int(first[5])) / cls.TICK, cores


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    versions = {}
    for package in ("pymilter", "mxguard", "dnspython"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }
