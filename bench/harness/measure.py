"""Measuring one milter: client processes, and the CPU of the milter and machine meanwhile."""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .client import ClientOptions, DriveResult
from .driver import Driver
from .meters import Meters
from .protocol import Address
from .workload import Workload


@dataclass
class Phase:
    """The figures of one milter over one or more measured runs."""

    name: str
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    header_edits: Counter[str] = field(default_factory=Counter)
    round_trips: float = 0.0
    window: float = 0.0
    client_cpu: float = 0.0
    milter_cpu: float = 0.0
    dns_cpu: float = 0.0
    machine_busy: float = 0.0  # CPU seconds of the whole machine
    late: int = 0

    def add(self, other: Phase) -> None:
        """Accumulate another run of the same milter."""
        self.ok += other.ok
        self.late += other.late
        self.errors.update(other.errors)
        self.latencies.extend(other.latencies)
        self.refusals.extend(other.refusals)
        self.header_edits.update(other.header_edits)
        self.round_trips = other.round_trips or self.round_trips
        self.window += other.window
        self.client_cpu += other.client_cpu
        self.milter_cpu += other.milter_cpu
        self.dns_cpu += other.dns_cpu
        self.machine_busy += other.machine_busy

    @property
    def error_count(self) -> int:
        """Failed transactions (and failed connection attempts)."""
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        """Successful transactions per second."""
        return self.ok / self.window if self.window else 0.0

    def percentile(self, fraction: float) -> float:
        """A latency percentile in milliseconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000

    def share(self, cpu_seconds: float) -> float:
        """CPU seconds as a percentage of one core over the window."""
        return 100 * cpu_seconds / self.window if self.window else 0.0

    def summary(self) -> dict[str, Any]:
        """The figures, for the table and the JSON file."""
        return {
            "transactions": self.ok,
            "transactions_per_second": round(self.rate, 1),
            "p50_ms": round(self.percentile(0.50), 3),
            "p99_ms": round(self.percentile(0.99), 3),
            "errors": self.error_count,
            "error_kinds": dict(self.errors.most_common(10)),
            "seconds": round(self.window, 3),
            "round_trips_per_transaction": round(self.round_trips, 2),
            "milter_cpu_percent_of_a_core": round(self.share(self.milter_cpu), 1),
            "client_cpu_percent_of_a_core": round(self.share(self.client_cpu), 1),
            "dns_server_cpu_percent_of_a_core": round(self.share(self.dns_cpu), 1),
            "machine_busy_percent_of_a_core": round(self.share(self.machine_busy), 1),
            "milter_cpu_ms_per_transaction": round(1000 * self.milter_cpu / self.ok, 3)
            if self.ok
            else None,
            "client_cpu_ms_per_transaction": round(1000 * self.client_cpu / self.ok, 3)
            if self.ok
            else None,
        }


def client_process(
    pipe: Connection,
    address: Address,
    workload: Workload,
    options: ClientOptions,
    sessions: int,
    seconds: float | None,
    count: int | None,
) -> None:
    """A client process: say ready, wait for the start time, drive, send the result back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    driver = Driver(address, workload, options)
    pipe.send("ready")
    start_at = pipe.recv()
    pipe.send(driver.run(sessions, start_at, seconds, count))
    pipe.close()


def run_phase(
    name: str,
    address: Address,
    milter_pid: int,
    workload: Workload,
    options: ClientOptions,
    *,
    sessions: int,
    clients: int,
    seconds: float | None,
    count: int | None,
) -> Phase:
    """Run the client processes against one milter once; measure them, the milter and the
    machine over the same window."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with DNS threads
    shares = [sessions // clients + (1 if i < sessions % clients else 0) for i in range(clients)]
    shares = [share for share in shares if share]
    counts: list[int | None] = [None] * len(shares)
    if count is not None:
        counts = [count * share // sessions for share in shares]
        counts[0] += count - sum(c or 0 for c in counts)
    pipes: list[Connection] = []
    processes = []
    try:
        for share, quota in zip(shares, counts, strict=True):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=client_process,
                args=(child_end, address, workload, options, share, seconds, quota),
                name=f"bench-client-{name}",
                daemon=True,
            )
            process.start()
            child_end.close()
            pipes.append(parent_end)
            processes.append(process)
        for pipe in pipes:
            if not pipe.poll(60) or pipe.recv() != "ready":
                raise RuntimeError("a client process did not start")
        start_at = time.monotonic() + 0.05
        for pipe in pipes:
            pipe.send(start_at)
        time.sleep(max(0.0, start_at - time.monotonic()))
        before = Meters(milter_pid)
        if seconds is not None:
            time.sleep(max(0.0, start_at + seconds - time.monotonic()))
            after = Meters(milter_pid)
        limit = (seconds or 0) + options.reply_timeout + 120
        results: list[DriveResult] = []
        for pipe in pipes:
            if not pipe.poll(limit):
                raise RuntimeError("a client process did not finish")
            results.append(pipe.recv())
        if seconds is None:
            after = Meters(milter_pid)
        for process in processes:
            process.join(10)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
        for pipe in pipes:
            pipe.close()

    phase = Phase(name)
    phase.window = max(r.window for r in results)
    for result in results:
        phase.ok += result.ok
        phase.late += result.late
        phase.errors.update(result.errors)
        phase.latencies.extend(result.latencies)
        phase.refusals.extend(result.refusals)
        phase.header_edits.update(result.header_edits)
        phase.round_trips = result.round_trips or phase.round_trips
        # A client's CPU over its own working time, scaled to the window.
        phase.client_cpu += result.cpu * (phase.window / result.wall if result.wall else 1.0)
    phase.milter_cpu = after.milter - before.milter
    phase.dns_cpu = after.own - before.own  # the parent only serves DNS meanwhile
    phase.machine_busy = after.busy_since(before)
    return phase
