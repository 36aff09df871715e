"""A workload compiled for one milter's negotiation: every step's packets, encoded once."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .protocol import (
    P_HDR_LEADSPC,
    P_NOBODY,
    P_NOCONNECT,
    P_NODATA,
    P_NOEOH,
    P_NOHDRS,
    P_NOHELO,
    P_NOMAIL,
    P_NORCPT,
    P_NR_BODY,
    P_NR_CONN,
    P_NR_DATA,
    P_NR_EOH,
    P_NR_HDR,
    P_NR_HELO,
    P_NR_MAIL,
    P_NR_RCPT,
    WAIT_BODY,
    WAIT_CONTINUE,
    WAIT_EOM,
    WAIT_RCPT,
    Negotiated,
    Step,
    cstr,
    packet,
)
from .workload import CLIENT_IP, CLIENT_NAME, Workload

# Postfix's default milter_*_macros (a milter that sends no macro list gets these).
POSTFIX_MACROS: dict[bytes, tuple[str, ...]] = {
    b"C": ("j", "{daemon_name}", "{daemon_addr}", "v", "_"),
    b"H": ("{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"),
    b"M": (
        "i",
        "{auth_type}",
        "{auth_authen}",
        "{auth_author}",
        "{mail_addr}",
        "{mail_host}",
        "{mail_mailer}",
    ),
    b"R": ("i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"),
    b"T": ("i",),
    b"N": ("i",),
    b"E": ("i",),
}

# A packet before merging: (bytes, what it waits for or None for no reply, name).
_Packet = tuple[bytes, int | None, str]


@dataclass(frozen=True)
class Plan:
    """A workload compiled for one negotiation: the steps of each transaction, pre-encoded.

    Packets the milter gets no reply for are written together with the next packet that
    waits for one, so each step is one write and one reply (or a series at EOM)."""

    first: tuple[tuple[Step, ...], ...]  # per transaction, CONNECT and HELO in front
    later: tuple[tuple[Step, ...], ...]  # per transaction, on a connection already open
    quit: bytes

    def round_trips(self, per_connection: int) -> float:
        """Replies waited for per transaction, negotiation included, on average."""
        first = sum(len(steps) for steps in self.first) / len(self.first)
        later = sum(len(steps) for steps in self.later) / len(self.later)
        return (1 + first + (per_connection - 1) * later) / per_connection


def _macro_packet(command: bytes, values: dict[str, str], negotiated: Negotiated) -> bytes | None:
    """The SMFIC_MACRO packet before ``command``: the macros asked for that have values."""
    wanted = negotiated.macros.get(command, POSTFIX_MACROS.get(command, ()))
    pairs = b"".join(cstr(name) + cstr(values[name]) for name in wanted if name in values)
    return packet(b"D", command + pairs) if pairs else None


def compile_plan(workload: Workload, negotiated: Negotiated) -> Plan:
    """Encode every transaction's packets for what the milter negotiated."""
    proto = negotiated.protocol
    lead = " " if proto & P_HDR_LEADSPC else ""
    conn = workload.connection_macros()

    def wait(no_reply_bit: int, kind: int) -> int | None:
        return None if proto & no_reply_bit else kind

    opening: list[_Packet] = []
    if not proto & P_NOCONNECT:
        macros = _macro_packet(b"C", conn, negotiated)
        connect = packet(
            b"C",
            cstr(CLIENT_NAME) + b"4" + struct.pack("!H", workload.client_port) + cstr(CLIENT_IP),
        )
        opening.append(((macros or b"") + connect, wait(P_NR_CONN, WAIT_CONTINUE), "connect"))
    if not proto & P_NOHELO:
        macros = _macro_packet(b"H", conn, negotiated)
        hello = packet(b"H", cstr(CLIENT_NAME))
        opening.append(((macros or b"") + hello, wait(P_NR_HELO, WAIT_CONTINUE), "helo"))

    transactions: list[list[_Packet]] = []
    for txn in workload.transactions:
        packets: list[_Packet] = []
        values = {**conn, "i": txn.queue_id}
        if not proto & P_NOMAIL:
            mail_values = {**conn, "{mail_addr}": txn.sender, "{mail_mailer}": "smtp"}
            mail_values["{mail_host}"] = txn.sender.rpartition("@")[2]
            macros = _macro_packet(b"M", mail_values, negotiated) or b""
            mail = packet(b"M", cstr(f"<{txn.sender}>") + cstr("BODY=8BITMIME"))
            packets.append((macros + mail, wait(P_NR_MAIL, WAIT_CONTINUE), "mail"))
        if not proto & P_NORCPT:
            for address, expect in txn.recipients:
                rcpt_values = {
                    **values,
                    "{rcpt_addr}": address,
                    "{rcpt_host}": address.rpartition("@")[2],
                    "{rcpt_mailer}": "local",
                }
                macros = _macro_packet(b"R", rcpt_values, negotiated) or b""
                rcpt = packet(b"R", cstr(f"<{address}>"))
                # The probe's trick recipient always waits: only mxguard gets the probe.
                kind = wait(P_NR_RCPT, WAIT_RCPT) if expect == WAIT_RCPT else expect
                packets.append((macros + rcpt, kind, f"rcpt <{address}>"))
        if not proto & P_NODATA:
            macros = _macro_packet(b"T", values, negotiated) or b""
            packets.append((macros + packet(b"T"), wait(P_NR_DATA, WAIT_CONTINUE), "data"))
        if not proto & P_NOHDRS:
            for name, value in txn.headers:
                header = packet(b"L", cstr(name) + cstr(lead + value))
                packets.append((header, wait(P_NR_HDR, WAIT_CONTINUE), f"header {name}"))
        if not proto & P_NOEOH:
            macros = _macro_packet(b"N", values, negotiated) or b""
            packets.append((macros + packet(b"N"), wait(P_NR_EOH, WAIT_CONTINUE), "eoh"))
        if not proto & P_NOBODY:
            size = workload.chunk_size
            for offset in range(0, len(txn.body), size):
                chunk = packet(b"B", txn.body[offset : offset + size])
                packets.append((chunk, wait(P_NR_BODY, WAIT_BODY), "body"))
        macros = _macro_packet(b"E", values, negotiated) or b""
        packets.append((macros + packet(b"E"), WAIT_EOM, "eom"))
        transactions.append(packets)

    return Plan(
        first=tuple(_merge([*opening, *packets]) for packets in transactions),
        later=tuple(_merge(packets) for packets in transactions),
        quit=packet(b"Q"),
    )


def _merge(packets: Sequence[_Packet]) -> tuple[Step, ...]:
    """Join each run of no-reply packets to the packet after it that waits for a reply."""
    steps: list[Step] = []
    pending = b""
    for data, kind, label in packets:
        pending += data
        if kind is not None:
            steps.append((pending, kind, label))
            pending = b""
    assert not pending, "the last packet (EOM) always waits"
    return tuple(steps)
