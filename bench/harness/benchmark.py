"""One benchmark run: set up, probe, warm up, measure, report, and clean up whatever happens."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import peers, report
from .client import ClientOptions, DriveResult
from .driver import Driver
from .measure import Phase, run_phase
from .meters import machine_info
from .workload import Workload, make_dkim_key, make_workloads


def benchmark(args: argparse.Namespace) -> int:
    """Set up, warm up, measure, report; clean up whatever happens."""
    peers.import_support()
    from tests.support.mxguard_proc import MilterStartError

    info = machine_info()
    seconds = None if args.count is not None else args.seconds
    with contextlib.ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mxguard-bench-")))
        try:
            dkim_key = None if args.no_dkim else make_dkim_key(work_dir)
            workload, probe = make_workloads(args.body_bytes, args.chunk_size, dkim_key)
            dns_server = peers.start_dns(stack, dkim_key[1] if dkim_key is not None else None)
            milters = peers.start_milters(stack, args.socket, work_dir, dns_server.address)
        except (MilterStartError, OSError, subprocess.CalledProcessError, RuntimeError) as error:
            print(f"bench: set-up failed: {error}", file=sys.stderr)
            return 2
        mxguard = dict(milters)["mxguard"]
        dkim_signed = dkim_key is not None
        txn = workload.transactions[0]
        report.print_setup(info, args, seconds, txn, dkim_signed, dns_server.address)

        options = ClientOptions(args.per_connection, args.reply_timeout, args.quickack)
        failures: list[str] = []
        try:
            probe_result = relay_probe(mxguard, probe, options, failures)
            warm_up(milters, workload, options, args, failures)
            totals = measure_rounds(milters, workload, options, args, seconds)
        except RuntimeError as error:
            print(f"bench: {error}", file=sys.stderr)
            return 2

        ratio, phase_failures = report.print_results(totals, args.clients)
        failures += phase_failures
        if args.json:
            report.write_json(
                args.json,
                args,
                info,
                seconds,
                len(txn.body),
                dkim_signed,
                totals,
                ratio,
                probe_result,
                failures,
            )
        if failures:
            report.print_failures(failures, mxguard.log_text())
            return 1
        return 0


def relay_probe(
    mxguard: Any, probe: Workload, options: ClientOptions, failures: list[str]
) -> DriveResult:
    """Send the relay trick to mxguard: its 550 is proof that the checks run for this client."""
    result = Driver(peers.socket_address(mxguard.socket), probe, options).run(
        1, time.monotonic(), None, 1
    )
    if result.errors or not result.refusals:
        failures.append(f"relay probe failed: {dict(result.errors)}")
    else:
        report.print_probe(result)
    return result


def warm_up(
    milters: peers.Milters,
    workload: Workload,
    options: ClientOptions,
    args: argparse.Namespace,
    failures: list[str],
) -> None:
    """Drive each milter for --warmup seconds and drop the figures; errors still count."""
    for name, process in milters:
        assert process.pid is not None
        warm = run_phase(
            name,
            peers.socket_address(process.socket),
            process.pid,
            workload,
            options,
            seconds=args.warmup,
            count=None,
            sessions=args.sessions,
            clients=args.clients,
        )
        if warm.errors:
            report.print_errors(warm)
            failures.append(f"{name}: {warm.error_count} errors during the warm-up")


def measure_rounds(
    milters: peers.Milters,
    workload: Workload,
    options: ClientOptions,
    args: argparse.Namespace,
    seconds: float | None,
) -> dict[str, Phase]:
    """Measure the milters in turn, --rounds times, and add up each one's runs."""
    totals = {name: Phase(name) for name, _ in milters}
    for _ in range(args.rounds):
        for name, process in milters:
            assert process.pid is not None
            totals[name].add(
                run_phase(
                    name,
                    peers.socket_address(process.socket),
                    process.pid,
                    workload,
                    options,
                    seconds=seconds,
                    count=args.count,
                    sessions=args.sessions,
                    clients=args.clients,
                )
            )
    return totals
