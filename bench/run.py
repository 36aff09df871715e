"""Benchmark mxguard against a no-op pymilter milter (the floor), over the milter protocol.

    .venv/bin/python bench/run.py [--seconds 10] [--sessions 8] [--json FILE]

One run starts, on loopback only: a DNS server on 127.0.0.1 serving bench/zones.txt, the floor
(bench/noop_milter.py) and mxguard (every check at its defaults), each milter on its own free
loopback TCP port (or unix socket, --socket unix). It then plays the MTA: N concurrent
sessions, each opening a milter connection per SMTP session as Postfix does, negotiating, and
sending CONNECT, HELO, MAIL, RCPT, DATA, the header fields, EOH, the body and EOM with the
macros Postfix would send, honouring the steps the milter asked not to get and the replies it
said it would not give. Every reply is read and checked: anything but continue/accept (and
header edits at end of message) is an error.

Both milters get the same warm-up, then the same measured run (fixed time, or fixed count),
and a table compares them. Exit status: 0 when every transaction succeeded and mxguard
demonstrably ran its checks (a relay trick sent before the warm-up got a 550), 1 when some did not,
2 when the set-up failed. See bench/README.md for what the figures mean.

This file is the command line only; the benchmark itself is the package bench/harness/.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence

from harness.benchmark import benchmark


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark mxguard against a no-op pymilter milter (see bench/README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per milter")
    parser.add_argument(
        "--count", type=int, default=None, help="measure a fixed number of transactions instead"
    )
    parser.add_argument("--sessions", type=int, default=8, help="concurrent milter sessions")
    parser.add_argument(
        "--per-connection", type=int, default=1, help="transactions per milter connection"
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="client processes sharing the sessions"
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternate floor/mxguard runs")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per milter")
    parser.add_argument("--body-bytes", type=int, default=5000, help="message body size")
    parser.add_argument(
        "--chunk-size", type=int, default=65535, help="BODY chunk size (Postfix: 65535)"
    )
    parser.add_argument(
        "--reply-timeout", type=float, default=10.0, help="seconds to wait for a milter reply"
    )
    parser.add_argument(
        "--socket",
        choices=("tcp", "unix"),
        default="tcp",
        help="milter sockets: loopback TCP (default) or unix",
    )
    parser.add_argument(
        "--quickack",
        action="store_true",
        help="diagnostic: the client ACKs every TCP read at once (Postfix does not)",
    )
    parser.add_argument("--no-dkim", action="store_true", help="send unsigned messages")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.clients < 1 or args.rounds < 1 or args.per_connection < 1:
        parser.error("--sessions, --clients, --rounds and --per-connection must be at least 1")
    if args.count is not None and args.count < args.sessions:
        parser.error("--count must be at least --sessions")
    if not 1 <= args.chunk_size <= 65535:
        parser.error("--chunk-size must be between 1 and 65535")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; Ctrl-C (or SIGTERM) stops it after cleaning up."""
    args = parse_args(argv)
    try:
        with terminate_on_sigterm():
            return benchmark(args)
    except KeyboardInterrupt:
        print("bench: interrupted; milters and DNS server stopped", file=sys.stderr)
        return 130


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so clean-up runs as for Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
