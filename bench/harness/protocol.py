"""The milter protocol as the MTA speaks it: constants, packet encoding, negotiation replies.

Names follow libmilter's mfdef.h.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MILTER_VERSION = 6
ALL_ACTIONS = 0x1FF  # every version-6 action: header, body, recipient, sender edits, symlists
ALL_PROTOCOL = 0x1FFFFF  # every version-6 protocol bit, as Postfix offers them

P_NOCONNECT = 0x1
P_NOHELO = 0x2
P_NOMAIL = 0x4
P_NORCPT = 0x8
P_NOBODY = 0x10
P_NOHDRS = 0x20
P_NOEOH = 0x40
P_NR_HDR = 0x80
P_NODATA = 0x200
P_NR_CONN = 0x1000
P_NR_HELO = 0x2000
P_NR_MAIL = 0x4000
P_NR_RCPT = 0x8000
P_NR_DATA = 0x10000
P_NR_EOH = 0x40000
P_NR_BODY = 0x80000
P_HDR_LEADSPC = 0x100000

# The stage numbers of SMFIR_SETSYMLIST, and the command each one's macros precede.
SYMLIST_STAGES = {0: b"C", 1: b"H", 2: b"M", 3: b"R", 4: b"T", 5: b"E", 6: b"N"}

# Replies (one byte each).
R_ACCEPT = ord("a")
R_CONTINUE = ord("c")
R_SKIP = ord("s")
R_REPLYCODE = ord("y")
R_OPTNEG = ord("O")
R_ADDHEADER = ord("h")
R_INSHEADER = ord("i")
# What a milter may send at end of message before its final answer.
EOM_EDITS = frozenset(b"+-2behimpq")
REPLY_NAMES = {
    ord("r"): "reject",
    ord("t"): "tempfail",
    ord("d"): "discard",
    ord("f"): "connection failure",
    ord("4"): "shutdown (421)",
}

# What a step waits for.
WAIT_CONTINUE = 0  # connect, helo, mail, data, header, eoh: continue (accept also ends it)
WAIT_BODY = 1  # a body chunk: continue, or skip (the rest of the body)
WAIT_RCPT = 2  # an ordinary recipient: continue
WAIT_RCPT_550 = 3  # the relay trick: a 550 reply
WAIT_EOM = 4  # end of message: edits, then continue or accept

Step = tuple[bytes, int, str]  # (everything to write, what to wait for, name for messages)
Address = tuple[str, int] | str  # (host, port) of a TCP socket, or the path of a unix socket


def packet(command: bytes, payload: bytes = b"") -> bytes:
    """Encode one milter packet: 4-byte length, command byte, payload."""
    return struct.pack("!I", len(payload) + 1) + command + payload


def cstr(text: str) -> bytes:
    """Encode a NUL-terminated string."""
    return text.encode("utf-8") + b"\0"


def optneg_packet() -> bytes:
    """The MTA's option negotiation: version 6, every action and protocol step offered."""
    return packet(b"O", struct.pack("!III", MILTER_VERSION, ALL_ACTIONS, ALL_PROTOCOL))


def describe_reply(command: int, payload: bytes) -> str:
    """A reply in words, for error messages."""
    if command == R_REPLYCODE:
        return "reply " + payload.rstrip(b"\0").decode("utf-8", "replace")
    if command in REPLY_NAMES:
        return REPLY_NAMES[command]
    return f"unexpected reply {chr(command)!r}"


def added_header_name(command: int, payload: bytes) -> str | None:
    """The field name of an add-header or insert-header edit; None for any other edit."""
    if command == R_ADDHEADER:
        return payload.split(b"\0", 1)[0].decode()
    if command == R_INSHEADER:
        # SMFIR_INSHEADER starts with a 4-byte index in front of the name.
        return payload[4:].split(b"\0", 1)[0].decode()
    return None


@dataclass(frozen=True)
class Negotiated:
    """What a milter chose in its negotiation reply."""

    actions: int
    protocol: int
    macros: dict[bytes, tuple[str, ...]]  # by the command the macros precede

    @classmethod
    def parse(cls, payload: bytes) -> Negotiated:
        """Decode an SMFIC_OPTNEG reply, including the macro lists (setsymlist) after it."""
        if len(payload) < 12:
            raise ValueError(f"short negotiation reply ({len(payload)} bytes)")
        _version, actions, protocol = struct.unpack("!III", payload[:12])
        macros: dict[bytes, tuple[str, ...]] = {}
        rest = payload[12:]
        while len(rest) >= 5:
            stage = struct.unpack("!I", rest[:4])[0]
            end = rest.index(b"\0", 4)
            if stage in SYMLIST_STAGES:
                macros[SYMLIST_STAGES[stage]] = tuple(rest[4:end].decode().split())
            rest = rest[end + 1 :]
        return cls(actions, protocol, macros)
