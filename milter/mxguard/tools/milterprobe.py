"""The MTA's first step of the milter protocol, for ``mxguard doctor``: connect to a milter
socket, offer an option negotiation as Postfix does, and tell whether a milter answered.

A packet is a 4-byte big-endian length, then a command byte and its data. The MTA sends
SMFIC_OPTNEG (version, actions, protocol steps); a milter answers SMFIR_OPTNEG ('O') with the
same three words (and, from version 6, the macros it wants), after which SMFIC_QUIT ends it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass

SMFIC_OPTNEG = b"O"  # the MTA's option negotiation, and the milter's reply to it
SMFIC_QUIT = b"Q"
VERSION = 6
ALL_ACTIONS = 0x1FF  # SMFI_V6_ACTS: every action a version-6 milter may ask for
ALL_STEPS = 0x1FFFFF  # SMFI_V6_PROT: every protocol step and option Postfix can offer
MAX_REPLY = 65536  # an option-negotiation reply is 13 bytes plus a few macro lists
DENIED = "permission denied"

Address = str | tuple[str, int]  # a unix socket's file, or (host, port)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the socket did: a milter answered (``version`` set), or ``reason`` why not
    (``nobody``: nothing listens there)."""

    version: int = 0
    reason: str = ""
    nobody: bool = False

    @property
    def ok(self) -> bool:
        """Whether a milter completed the negotiation."""
        return self.version > 0


def negotiate(address: Address, timeout: float = 5.0) -> Answer:
    """Connect, offer version 6 with every action and step, read the reply, say QUIT."""
    try:
        with _connect(address, timeout) as conn:
            offer = struct.pack("!III", VERSION, ALL_ACTIONS, ALL_STEPS)
            conn.sendall(_packet(SMFIC_OPTNEG + offer))
            answer = _read_reply(conn)
            if answer.ok:
                # Politeness only: the milter cleans up either way once the connection closes.
                with contextlib.suppress(OSError):
                    conn.sendall(_packet(SMFIC_QUIT))
            return answer
    except FileNotFoundError:
        return Answer(reason="no such file", nobody=True)
    except ConnectionRefusedError:
        return Answer(reason="connection refused (nothing listens on it)", nobody=True)
    except PermissionError:
        return Answer(reason=DENIED)
    except TimeoutError:
        return Answer(reason=f"no answer within {timeout:g}s (not a milter, or a hung one)")
    except OSError as error:
        return Answer(reason=error.strerror or str(error))


def _connect(address: Address, timeout: float) -> socket.socket:
    """A connected stream socket whose reads time out after ``timeout`` seconds."""
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(address)
    except BaseException:
        conn.close()
        raise
    return conn


def _packet(payload: bytes) -> bytes:
    """A milter packet: the payload behind its 4-byte length."""
    return struct.pack("!I", len(payload)) + payload


def _read_reply(conn: socket.socket) -> Answer:
    """Read one packet and judge it as an option-negotiation reply."""
    head = _read(conn, 4)
    if len(head) < 4:
        return Answer(reason=_closed(head))
    (length,) = struct.unpack("!I", head)
    if not 13 <= length <= MAX_REPLY:
        # Not a milter packet: most likely a server that talks first (SMTP's 220 banner).
        return Answer(reason=f"not a milter: it answered {(head + _peek(conn))[:40]!r}")
    payload = _read(conn, length)
    if len(payload) < length:
        return Answer(reason=_closed(head + payload))
    command, (version, _actions, _steps) = payload[:1], struct.unpack("!III", payload[1:13])
    if command != SMFIC_OPTNEG or not 2 <= version <= VERSION:
        return Answer(reason=f"not a milter: it answered {(head + payload)[:40]!r}")
    return Answer(version=version)


def _read(conn: socket.socket, count: int) -> bytes:
    """Up to ``count`` bytes: fewer only when the peer closed the connection."""
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _peek(conn: socket.socket) -> bytes:
    """Whatever else has already arrived, to show the admin what answered."""
    conn.settimeout(0.2)
    try:
        return conn.recv(64)
    except OSError:
        return b""


def _closed(data: bytes) -> str:
    """Why not, when the peer hung up after sending ``data``."""
    if data:
        return f"not a milter: it sent {data[:40]!r} and closed the connection"
    return "the connection was closed without an answer (not a milter, or one that refused us)"
