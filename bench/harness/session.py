"""One MTA-to-milter connection: its socket, and the transaction in progress on it."""

from __future__ import annotations

import socket

from .plan import Plan
from .protocol import Address, Step


def open_socket(address: Address, timeout: float) -> socket.socket:
    """Connect to a milter's TCP or unix socket; raises OSError when that fails."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection(address, timeout=timeout)
    # Each step is one write already; never hold a write back for an ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Session:
    """One MTA-to-milter connection and the transaction in progress on it."""

    # Slots: the selector loop touches these attributes for every packet.
    __slots__ = (
        "buffer",
        "index",
        "negotiating",
        "outgoing",
        "plan",
        "script",
        "sent_at",
        "sock",
        "started",
        "steps",
        "transactions",
    )

    def __init__(self) -> None:
        """A session with no connection yet."""
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.outgoing: memoryview | None = None
        self.negotiating = True
        self.plan: Plan | None = None
        self.steps: tuple[Step, ...] = ()
        self.index = 0  # the step of ``steps`` whose reply is awaited
        self.script = 0  # the index of the workload's transaction being sent
        self.transactions = 0  # transactions done on this connection
        self.started = 0.0
        self.sent_at = 0.0

    def attach(self, sock: socket.socket) -> None:
        """Take a freshly connected socket (made non-blocking) and start negotiating on it."""
        sock.setblocking(False)
        self.sock = sock
        self.buffer.clear()
        self.outgoing = None
        self.negotiating = True
        self.transactions = 0

    def label(self) -> str:
        """The step whose reply is awaited, for error messages."""
        if self.negotiating or not self.steps:
            return "negotiation"
        return self.steps[self.index][2]
