"""A milter that does nothing: the floor of the benchmark, and a stand-in for tests.

Usage: python bench/noop_milter.py SOCKET [--umask OCTAL] [--timeout SECONDS]

SOCKET is in libmilter form: ``inet:9000@127.0.0.1``, ``inet6:9000@::1`` or ``unix:/path``.
Every callback is implemented and answers CONTINUE, so the MTA sends every protocol step and
waits for every reply, as it does for a real filter; no header or recipient is ever changed.
"""

from __future__ import annotations

import argparse
import os
import sys

import Milter


class NoopMilter(Milter.Base):
    """Answer CONTINUE to every milter callback and change nothing."""

    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        """Accept the connection."""
        return Milter.CONTINUE

    def hello(self, hostname: str) -> int:
        """Accept HELO/EHLO."""
        return Milter.CONTINUE

    def envfrom(self, mailfrom: str, *params: str) -> int:
        """Accept MAIL FROM."""
        return Milter.CONTINUE

    def envrcpt(self, rcpt: str, *params: str) -> int:
        """Accept RCPT TO."""
        return Milter.CONTINUE

    def data(self) -> int:
        """Accept DATA."""
        return Milter.CONTINUE

    def header(self, field: str, value: str) -> int:
        """Accept one header."""
        return Milter.CONTINUE

    def eoh(self) -> int:
        """Accept the end of headers."""
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        """Accept a body chunk."""
        return Milter.CONTINUE

    def unknown(self, cmd: str) -> int:
        """Accept an unknown SMTP command (the MTA rejects it anyway)."""
        return Milter.CONTINUE

    def eom(self) -> int:
        """Accept the message unchanged."""
        return Milter.CONTINUE

    def abort(self) -> int:
        """Forget the aborted transaction."""
        return Milter.CONTINUE

    def close(self) -> int:
        """Forget the connection."""
        return Milter.CONTINUE


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the milter until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="A no-op pymilter milter.")
    parser.add_argument("socket", help="libmilter socket, e.g. inet:9000@127.0.0.1 or unix:/path")
    parser.add_argument(
        "--umask",
        type=lambda text: int(text, 8),
        default=None,
        help="umask (octal) while creating a unix socket, e.g. 000 so the MTA user can connect",
    )
    parser.add_argument(
        "--timeout", type=int, default=600, help="seconds libmilter waits for the MTA"
    )
    args = parser.parse_args(argv)
    if args.umask is not None:
        os.umask(args.umask)
    Milter.factory = NoopMilter
    Milter.set_flags(0)
    print(f"noop_milter: listening on {args.socket}", file=sys.stderr, flush=True)
    Milter.runmilter("noop", args.socket, timeout=args.timeout, rmsock=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
