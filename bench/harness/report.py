"""What the benchmark prints, and the JSON file it writes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .client import DriveResult
from .measure import Phase
from .workload import CLIENT_IP, CLIENT_NAME, RELAY_TRICK, Transaction


def print_setup(
    info: dict[str, Any],
    args: argparse.Namespace,
    seconds: float | None,
    txn: Transaction,
    dkim_signed: bool,
    dns_address: str,
) -> None:
    """The machine, the run's settings and the message, one line each."""
    print(
        f"machine: {info['cpu']}, {info['cores']} cores ({info['cores_usable']} usable), "
        f"Linux {info['kernel']}, Python {info['python']}, pymilter {info['pymilter']}, "
        f"mxguard {info['mxguard']}"
    )
    mode = f"{args.count} transactions" if seconds is None else f"{seconds:g} s"
    print(
        f"run: {args.sessions} sessions in {args.clients} client process(es), "
        f"{args.per_connection} transaction(s) per connection, {mode} per milter x "
        f"{args.rounds} round(s), warm-up {args.warmup:g} s; {args.socket} sockets"
        f"{', client quick-ACKs' if args.quickack else ''}; mxguard logs at warning"
    )
    print(
        f"message: {len(txn.headers)} header fields "
        f"({'DKIM-signed' if dkim_signed else 'unsigned'}), body {len(txn.body)} bytes in "
        f"{-(-len(txn.body) // args.chunk_size)} BODY chunk(s), 1 or 2 recipients; "
        f"client {CLIENT_IP} ({CLIENT_NAME}), DNS on {dns_address}"
    )


def shown_refusal(text: str) -> str:
    """A refusal as the MTA shows it: Postfix and Sendmail turn the %% of a reply into %."""
    return text.replace("%%", "%")


def print_probe(probe: DriveResult) -> None:
    """The relay probe's refusal and the header fields mxguard added."""
    edits = ", ".join(sorted(probe.header_edits)) or "none"
    print(f"relay probe: RCPT <{RELAY_TRICK}> -> {shown_refusal(probe.refusals[0])}")
    print(f"mxguard header edits at end of message: {edits}")


def print_table(phases: Sequence[Phase]) -> None:
    """The compact table of results."""
    header = (
        f"{'milter':<8} {'txns':>8} {'txn/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'trips':>5} {'milter':>7} {'client':>7} {'dns':>5} {'machine':>8}"
    )
    print(header)
    for phase in phases:
        print(
            f"{phase.name:<8} {phase.ok:>8} {phase.rate:>8.1f} {phase.percentile(0.5):>7.2f} "
            f"{phase.percentile(0.99):>7.2f} {phase.error_count:>6} {phase.round_trips:>5.1f} "
            f"{phase.share(phase.milter_cpu):>6.0f}% {phase.share(phase.client_cpu):>6.0f}% "
            f"{phase.share(phase.dns_cpu):>4.0f}% {phase.share(phase.machine_busy):>7.0f}%"
        )
    print(
        "  trips: replies waited for per transaction; milter/client/dns/machine: CPU in % of"
        " one core"
    )


def print_errors(phase: Phase) -> None:
    """The kinds of error a phase met, most frequent first."""
    for reason, number in phase.errors.most_common(8):
        print(f"  {phase.name}: {number} x {reason}")


def print_results(totals: dict[str, Phase], clients: int) -> tuple[float, list[str]]:
    """The table, the ratio, errors and client warnings; returns (ratio, failures)."""
    phases = list(totals.values())
    print()
    print_table(phases)
    floor_rate = totals["floor"].rate
    ratio = totals["mxguard"].rate / floor_rate if floor_rate else float("nan")
    print(f"mxguard/floor transactions per second: {ratio:.2f}")
    failures = []
    for phase in phases:
        if phase.errors:
            print_errors(phase)
            failures.append(f"{phase.name}: {phase.error_count} failed transactions")
        if phase.share(phase.client_cpu) > 90 * clients:
            print(
                f"warning: the client used {phase.share(phase.client_cpu):.0f}% of a core "
                f"against {phase.name}: it may be the bottleneck (try --clients 2)"
            )
    return ratio, failures


def write_json(
    path: str,
    args: argparse.Namespace,
    info: dict[str, Any],
    seconds: float | None,
    body_bytes: int,
    dkim_signed: bool,
    totals: dict[str, Phase],
    ratio: float,
    probe: DriveResult,
    failures: Sequence[str],
) -> None:
    """Every figure, the settings and the machine, as JSON."""
    report = {
        "machine": info,
        "settings": {
            "sessions": args.sessions,
            "clients": args.clients,
            "per_connection": args.per_connection,
            "reply_timeout": args.reply_timeout,
            "socket": args.socket,
            "quickack": args.quickack,
            "seconds": seconds,
            "count": args.count,
            "rounds": args.rounds,
            "warmup_seconds": args.warmup,
            "body_bytes": body_bytes,
            "chunk_size": args.chunk_size,
            "dkim_signed": dkim_signed,
            "mxguard_log_level": "warning",
        },
        "results": {phase.name: phase.summary() for phase in totals.values()},
        "ratio_mxguard_to_floor": round(ratio, 3),
        "relay_probe": [shown_refusal(text) for text in probe.refusals[:1]],
        "failures": list(failures),
    }
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def print_failures(failures: Sequence[str], log_text: str) -> None:
    """Each failure, and the end of the mxguard log, on stderr."""
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    log_tail = log_text[-2000:]
    if log_tail:
        print(f"--- end of the mxguard log ---\n{log_tail}", file=sys.stderr)
