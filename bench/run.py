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
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import email.utils
import importlib.metadata
import json
import multiprocessing
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
ZONES = BENCH_DIR / "zones.txt"
NOOP_MILTER = BENCH_DIR / "noop_milter.py"

# -- the workload ----------------------------------------------------------------------------

CLIENT_IP = "203.0.113.25"  # outside trusted_networks: every check runs
CLIENT_NAME = "mail.sender.test"
MX_NAME = "mx.example.test"
MX_IP = "192.0.2.25"
SENDER = "newsletter@sender.test"
RECIPIENTS = ("alice@example.test", "bob@example.test")
RELAY_TRICK = "a%b@example.test"  # the percent hack: mxguard's relay check must refuse it
DKIM_SELECTOR = "bench"
DKIM_DOMAIN = "sender.test"
POSTFIX_VERSION = "Postfix 3.7.11"

# -- the milter protocol, MTA side (names as in libmilter's mfdef.h) --------------------------

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

# Replies (one byte each).
R_ACCEPT = ord("a")
R_CONTINUE = ord("c")
R_SKIP = ord("s")
R_REPLYCODE = ord("y")
R_OPTNEG = ord("O")
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


@dataclass(frozen=True)
class Transaction:
    """One message as the MTA reports it (negotiation-independent)."""

    queue_id: str
    sender: str
    recipients: tuple[tuple[str, int], ...]  # (address, WAIT_RCPT or WAIT_RCPT_550)
    headers: tuple[tuple[str, str], ...]  # values folded with LF, as Postfix sends them
    body: bytes  # CRLF line ends, as Postfix sends it


@dataclass(frozen=True)
class Workload:
    """The SMTP sessions the benchmark replays, cycling through ``transactions``."""

    transactions: tuple[Transaction, ...]
    chunk_size: int = 65535  # Postfix sends the body in chunks of up to 64 KiB
    client_port: int = 40025

    def connection_macros(self) -> dict[str, str]:
        """Macro values known at CONNECT and HELO."""
        return {
            "j": MX_NAME,
            "{daemon_name}": MX_NAME,
            "{daemon_addr}": MX_IP,
            "{client_addr}": CLIENT_IP,
            "{client_name}": CLIENT_NAME,
            "{client_ptr}": CLIENT_NAME,
            "v": POSTFIX_VERSION,
            "_": f"{CLIENT_NAME} [{CLIENT_IP}]",
        }


def _macro_packet(command: bytes, values: dict[str, str], negotiated: Negotiated) -> bytes | None:
    """The SMFIC_MACRO packet before ``command``: the macros asked for that have values."""
    wanted = negotiated.macros.get(command, POSTFIX_MACROS.get(command, ()))
    pairs = b"".join(cstr(name) + cstr(values[name]) for name in wanted if name in values)
    return packet(b"D", command + pairs) if pairs else None


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


def compile_plan(workload: Workload, negotiated: Negotiated) -> Plan:
    """Encode every transaction's packets for what the milter negotiated."""
    proto = negotiated.protocol
    lead = " " if proto & P_HDR_LEADSPC else ""
    conn = workload.connection_macros()

    def wait(no_reply_bit: int, kind: int) -> int | None:
        return None if proto & no_reply_bit else kind

    opening: list[tuple[bytes, int | None, str]] = []
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

    transactions: list[list[tuple[bytes, int | None, str]]] = []
    for txn in workload.transactions:
        packets: list[tuple[bytes, int | None, str]] = []
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


def _merge(packets: Sequence[tuple[bytes, int | None, str]]) -> tuple[Step, ...]:
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


def _describe(command: int, payload: bytes) -> str:
    """A reply in words, for error messages."""
    if command == R_REPLYCODE:
        return "reply " + payload.rstrip(b"\0").decode("utf-8", "replace")
    if command in REPLY_NAMES:
        return REPLY_NAMES[command]
    return f"unexpected reply {chr(command)!r}"


# -- the client: one selector loop driving many sessions --------------------------------------


@dataclass
class DriveResult:
    """What one client process saw."""

    ok: int = 0  # transactions that succeeded inside the window
    late: int = 0  # transactions that succeeded after it (finishing in-flight work)
    latencies: list[float] = field(default_factory=list)  # seconds, of the ``ok`` ones
    errors: Counter[str] = field(default_factory=Counter)
    refusals: list[str] = field(default_factory=list)  # texts of the expected 550 replies
    header_edits: Counter[str] = field(default_factory=Counter)  # added fields, by name
    round_trips: float = 0.0
    window: float = 0.0  # seconds the measured window lasted
    wall: float = 0.0  # seconds the process worked (window plus draining)
    cpu: float = 0.0  # CPU seconds (user + system) the process used meanwhile


class _Session:
    """One MTA-to-milter connection and the transaction in progress on it."""

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
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.outgoing: memoryview | None = None
        self.negotiating = True
        self.plan: Plan | None = None
        self.steps: tuple[Step, ...] = ()
        self.index = 0
        self.script = 0
        self.transactions = 0
        self.started = 0.0
        self.sent_at = 0.0


@dataclass(frozen=True)
class ClientOptions:
    """How the client behaves towards the milter."""

    per_connection: int = 1  # transactions per milter connection
    reply_timeout: float = 10.0  # seconds to wait for a reply before counting an error
    quickack: bool = False  # ACK every TCP read at once (diagnostic; Postfix does not)


class Driver:
    """Drive sessions against one milter from a single selector loop, until a deadline or
    until a number of transactions has been started."""

    def __init__(self, address: Address, workload: Workload, options: ClientOptions) -> None:
        """Prepare the packets that do not depend on the negotiation."""
        self.address = address
        self.workload = workload
        self.per_connection = max(1, options.per_connection)
        self.reply_timeout = options.reply_timeout
        self.quickack = options.quickack and isinstance(address, tuple)
        self.optneg = optneg_packet()
        self.plans: dict[bytes, Plan] = {}  # by the raw negotiation reply
        self.selector = selectors.DefaultSelector()
        self.result = DriveResult()
        self.stop_at = float("inf")
        self.quota: int | None = None
        self.next_script = 0
        self.live = 0

    # The loop.

    def run(
        self, sessions: int, start_at: float, seconds: float | None, count: int | None
    ) -> DriveResult:
        """Wait until ``start_at`` (time.monotonic), then run ``sessions`` sessions for
        ``seconds`` (counting what completes inside the window) or for ``count`` transactions."""
        delay = start_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        cpu_start = _own_cpu()
        begin = time.monotonic()
        if seconds is not None:
            self.stop_at = begin + seconds
        self.quota = count
        all_sessions = [_Session() for _ in range(sessions)]
        for session in all_sessions:
            self._open(session)
        last_sweep = begin
        select = self.selector.select
        while self.live:
            for key, events in select(0.25):
                session = key.data
                if session.sock is not key.fileobj:
                    continue  # closed earlier in this batch (its fd may be reused already)
                if events & selectors.EVENT_WRITE:
                    self._flush(session)
                if events & selectors.EVENT_READ and session.sock is key.fileobj:
                    self._readable(session)
            now = time.monotonic()
            if now - last_sweep > 0.25:
                last_sweep = now
                for session in all_sessions:
                    if session.sock is not None and now - session.sent_at > self.reply_timeout:
                        self._fail(session, f"{self._label(session)}: no reply in time")
        end = time.monotonic()
        self.selector.close()
        result = self.result
        result.wall = end - begin
        result.window = (self.stop_at if seconds is not None else end) - begin
        result.cpu = _own_cpu() - cpu_start
        return result

    def _more(self, now: float) -> bool:
        """Whether another transaction may start."""
        if self.quota is not None:
            return self.quota > 0
        return now < self.stop_at

    def _take_script(self) -> int:
        """The index of the next transaction to send; counts it against the quota."""
        if self.quota is not None:
            self.quota -= 1
        index = self.next_script
        self.next_script = (index + 1) % len(self.workload.transactions)
        return index

    # Connections.

    def _open(self, session: _Session) -> None:
        """Open a new milter connection for the session and start negotiating."""
        if not self._more(time.monotonic()):
            return
        session.script = self._take_script()
        session.started = time.monotonic()
        try:
            if isinstance(self.address, str):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.reply_timeout)
                try:
                    sock.connect(self.address)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection(self.address, timeout=self.reply_timeout)
                # Each step is one write already; never hold a write back for an ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            # The milter is gone or refuses: count it, and stop this session.
            self.result.errors[f"connect: {error.strerror or error}"] += 1
            return
        sock.setblocking(False)
        session.sock = sock
        session.buffer.clear()
        session.outgoing = None
        session.negotiating = True
        session.transactions = 0
        self.selector.register(sock, selectors.EVENT_READ, session)
        self.live += 1
        self._send(session, self.optneg)

    def _close(self, session: _Session, polite: bool) -> None:
        """Close the session's connection (after SMFIC_QUIT when polite)."""
        sock = session.sock
        if sock is None:
            return
        if polite and session.plan is not None:
            with contextlib.suppress(OSError):
                sock.send(session.plan.quit)
        self.selector.unregister(sock)
        sock.close()
        session.sock = None
        self.live -= 1

    def _send(self, session: _Session, data: bytes) -> None:
        """Write data; what the socket does not take now is written when it is writable."""
        session.sent_at = time.monotonic()
        assert session.sock is not None
        try:
            sent = session.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            self._fail(session, f"{self._label(session)}: send: {error.strerror or error}")
            return
        if sent < len(data):
            session.outgoing = memoryview(data)[sent:]
            self.selector.modify(
                session.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, session
            )

    def _flush(self, session: _Session) -> None:
        """Write more of a pending packet."""
        if session.sock is None or session.outgoing is None:
            return
        try:
            sent = session.sock.send(session.outgoing)
        except BlockingIOError:
            return
        except OSError as error:
            self._fail(session, f"{self._label(session)}: send: {error.strerror or error}")
            return
        session.outgoing = session.outgoing[sent:]
        if not len(session.outgoing):
            session.outgoing = None
            self.selector.modify(session.sock, selectors.EVENT_READ, session)

    # Replies.

    def _readable(self, session: _Session) -> None:
        """Read what arrived and handle every complete reply packet."""
        sock = session.sock
        assert sock is not None
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            self._fail(session, f"{self._label(session)}: recv: {error.strerror or error}")
            return
        if not data:
            self._fail(session, f"{self._label(session)}: the milter closed the connection")
            return
        if self.quickack:  # Linux leaves quick-ACK mode again by itself: renew it each time
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        buffer = session.buffer
        buffer += data
        while len(buffer) >= 5:
            size = int.from_bytes(buffer[:4], "big")
            if len(buffer) < 4 + size:
                return
            command = buffer[4]
            payload = bytes(buffer[5 : 4 + size])
            del buffer[: 4 + size]
            if not self._reply(session, command, payload) or session.sock is not sock:
                return

    def _reply(self, session: _Session, command: int, payload: bytes) -> bool:
        """Handle one reply; return False when the session's connection ended or changed."""
        if session.negotiating:
            if command != R_OPTNEG:
                self._fail(session, f"negotiation: {_describe(command, payload)}")
                return False
            plan = self.plans.get(payload)
            if plan is None:
                plan = self.plans[payload] = compile_plan(self.workload, Negotiated.parse(payload))
                self.result.round_trips = plan.round_trips(self.per_connection)
            session.plan = plan
            session.negotiating = False
            session.steps = plan.first[session.script]
            session.index = 0
            self._send(session, session.steps[0][0])
            return True
        _, kind, label = session.steps[session.index]
        if kind == WAIT_EOM:
            if command in (R_CONTINUE, R_ACCEPT):
                return self._done(session)
            if command in EOM_EDITS:
                if command == ord("h"):
                    self.result.header_edits[payload.split(b"\0", 1)[0].decode()] += 1
                elif command == ord("i"):
                    self.result.header_edits[payload[4:].split(b"\0", 1)[0].decode()] += 1
                return True
        elif kind == WAIT_RCPT_550:
            if command == R_REPLYCODE and payload.startswith(b"550 "):
                self.result.refusals.append(payload.rstrip(b"\0").decode("utf-8", "replace"))
                return self._advance(session, session.index + 1)
            self._fail(
                session, f"{label}: expected a 550 refusal, got {_describe(command, payload)}"
            )
            return False
        elif command == R_CONTINUE:
            return self._advance(session, session.index + 1)
        elif command == R_ACCEPT:
            # Accepted without further checks: the MTA stops asking this milter.
            return self._done(session, end_connection=True)
        elif command == R_SKIP and kind == WAIT_BODY:
            return self._advance(session, len(session.steps) - 1)  # straight to EOM
        self._fail(session, f"{label}: {_describe(command, payload)}")
        return False

    def _advance(self, session: _Session, index: int) -> bool:
        """Send the next step."""
        session.index = index
        self._send(session, session.steps[index][0])
        return session.sock is not None

    def _done(self, session: _Session, end_connection: bool = False) -> bool:
        """A transaction succeeded: record it, then start the next one or reconnect."""
        now = time.monotonic()
        result = self.result
        if now <= self.stop_at:
            result.ok += 1
            result.latencies.append(now - session.started)
        else:
            result.late += 1
        session.transactions += 1
        assert session.plan is not None
        if not end_connection and session.transactions < self.per_connection and self._more(now):
            session.script = self._take_script()
            session.steps = session.plan.later[session.script]
            session.index = 0
            session.started = now
            self._send(session, session.steps[0][0])
            return session.sock is not None
        self._close(session, polite=True)
        self._open(session)
        return False

    def _fail(self, session: _Session, reason: str) -> None:
        """A transaction failed: count it, drop the connection, start afresh."""
        self.result.errors[reason] += 1
        self._close(session, polite=False)
        self._open(session)

    @staticmethod
    def _label(session: _Session) -> str:
        if session.negotiating or not session.steps:
            return "negotiation"
        return session.steps[session.index][2]


def _own_cpu() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


# -- measuring a phase ------------------------------------------------------------------------


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
        before = _Meters(milter_pid)
        if seconds is not None:
            time.sleep(max(0.0, start_at + seconds - time.monotonic()))
            after = _Meters(milter_pid)
        limit = (seconds or 0) + options.reply_timeout + 120
        results: list[DriveResult] = []
        for pipe in pipes:
            if not pipe.poll(limit):
                raise RuntimeError("a client process did not finish")
            results.append(pipe.recv())
        if seconds is None:
            after = _Meters(milter_pid)
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


class _Meters:
    """CPU counters read at one instant: the milter process, this process, the machine."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, milter_pid: int) -> None:
        """Read the counters now."""
        self.milter = self._process_cpu(milter_pid)
        self.own = _own_cpu()
        self.idle, self.cores = self._machine_idle()
        self.when = time.monotonic()

    def busy_since(self, before: _Meters) -> float:
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


# -- the set-up: DNS, the two milters, the messages --------------------------------------------


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


def make_body(size: int) -> bytes:
    """A plain-text body of about ``size`` bytes, CRLF line ends."""
    lines = ["Hello Alice,", ""]
    total = 0
    number = 0
    while total < size:
        number += 1
        line = (
            f"{number:03d}. The spring newsletter lists the courses, the opening hours of "
            "the library and the results of the club's annual general meeting."
        )
        lines.append(line)
        total += len(line) + 2
    lines += ["", "Kind regards,", "The sender.test team"]
    return ("\r\n".join(lines) + "\r\n").encode()


def make_dkim_key(work_dir: Path) -> tuple[bytes, str] | None:
    """A fresh 2048-bit RSA key with openssl: (private key PEM, DNS TXT value); None if no
    openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    key_file = work_dir / "dkim.pem"
    generate = [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    subprocess.run(
        [*generate, "-out", str(key_file)],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        [openssl, "pkey", "-in", str(key_file), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key_file.read_bytes(), f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


def make_transaction(
    number: int,
    recipients: Sequence[tuple[str, int]],
    body: bytes,
    dkim_key: tuple[bytes, str] | None,
) -> Transaction:
    """A newsletter-like message with realistic header fields, DKIM-signed when a key exists."""
    date = email.utils.formatdate(localtime=False)
    queue_id = f"4Xbench{number:04d}Q"
    genuine = [address for address, _ in recipients if "%" not in address]
    to = ", ".join(f"<{address}>" for address in genuine)
    fields = [
        ("From", f"Sender Newsletter <{SENDER}>"),
        ("To", to),
        ("Subject", f"Spring newsletter, issue {number}"),
        ("Date", date),
        ("Message-ID", f"<bench.{number}.{int(time.time())}@{DKIM_DOMAIN}>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "8bit"),
        ("List-Unsubscribe", f"<mailto:unsubscribe@{DKIM_DOMAIN}?subject=unsubscribe>"),
    ]
    received = (
        "Received",
        f"from submit.sender.test (submit.sender.test [203.0.113.40])\r\n"
        f"\tby {CLIENT_NAME} (Postfix) with ESMTPS id 4Xsend{number:04d}Z\r\n"
        f"\tfor <{genuine[0]}>; {date}",
    )
    headers = [received]
    if dkim_key is not None:
        import dkim  # dkimpy, a dependency of mxguard

        raw = b"".join(f"{name}: {value}\r\n".encode() for name, value in fields) + b"\r\n"
        signed = dkim.sign(
            raw + body,
            DKIM_SELECTOR.encode(),
            DKIM_DOMAIN.encode(),
            dkim_key[0],
            include_headers=[name.lower().encode() for name, _ in fields],
        )
        txt = dkim_key[1].encode()
        if not dkim.verify(signed + raw + body, dnsfunc=lambda _name, timeout=5: txt):
            raise RuntimeError("the benchmark's own DKIM signature does not verify")
        name, _, value = signed.decode().partition(":")
        headers.append((name, value.strip().rstrip("\r\n")))
    headers += fields
    # Postfix hands folded values to milters with bare LF line breaks.
    lf_headers = tuple((name, value.replace("\r\n", "\n")) for name, value in headers)
    return Transaction(
        queue_id=queue_id,
        sender=SENDER,
        recipients=tuple(recipients),
        headers=lf_headers,
        body=body,
    )


def make_workloads(
    body_bytes: int, chunk_size: int, dkim_key: tuple[bytes, str] | None
) -> tuple[Workload, Workload]:
    """The measured workload (one, then two recipients, alternately) and the relay probe."""
    body = make_body(body_bytes)
    one = [(RECIPIENTS[0], WAIT_RCPT)]
    two = [(address, WAIT_RCPT) for address in RECIPIENTS]
    measured = Workload(
        transactions=(
            make_transaction(1, one, body, dkim_key),
            make_transaction(2, two, body, dkim_key),
        ),
        chunk_size=chunk_size,
    )
    trick = [(RELAY_TRICK, WAIT_RCPT_550), (RECIPIENTS[0], WAIT_RCPT)]
    probe = Workload(
        transactions=(make_transaction(3, trick, body, dkim_key),), chunk_size=chunk_size
    )
    return measured, probe


def add_dkim_record(dns_server: Any, txt_value: str) -> None:
    """Publish the run's DKIM key (split into 255-byte strings) in the benchmark's DNS."""
    from dnslib import QTYPE, RR, TXT

    data = txt_value.encode()
    strings = [data[i : i + 255] for i in range(0, len(data), 255)]
    dns_server.add_records(
        [
            RR(
                rname=f"{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}.",
                rtype=QTYPE.TXT,
                ttl=3600,
                rdata=TXT(strings),
            )
        ]
    )


def mxguard_command() -> list[str]:
    """``.venv/bin/mxguard run -c {ini}`` next to this Python, else ``python -m mxguard``."""
    script = Path(sys.executable).with_name("mxguard")
    if script.exists():
        return [str(script), "run", "-c", "{ini}"]
    return [sys.executable, "-m", "mxguard", "run", "-c", "{ini}"]


def mxguard_config(
    socket_spec: str, dns_address: str, state_dir: Path
) -> dict[str, dict[str, str]]:
    """mxguard's INI: every check on (at its defaults, two DNSBL zones); the client is outside."""
    return {
        "milter": {
            "socket": socket_spec,
            "local_domains": "example.test",
            "hostnames": MX_NAME,
            "trusted_networks": "192.0.2.0/24",
        },
        "dns": {"nameservers": dns_address},
        # Two blocklists (not listing the client: NXDOMAIN, cached like the real DNS).
        "dnsbl": {"zones": "zen.bench.test=3, bl.bench.test=1", "threshold": "3"},
        "rhsbl": {"zones": "dbl.bench.test=3", "threshold": "3"},
        "state": {"url": f"sqlite:///{state_dir / 'state.db'}"},
        "log": {"level": "warning"},
    }


def milter_socket(kind: str, work_dir: Path, name: str) -> str:
    """A libmilter socket spec: a free loopback TCP port, or a unix socket in work_dir."""
    if kind == "unix":
        return f"unix:{work_dir / f'{name}.sock'}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return f"inet:{probe.getsockname()[1]}@127.0.0.1"


def socket_address(socket_spec: str) -> Address:
    """Where to connect for an ``inet:PORT@HOST`` or ``unix:/path`` milter socket."""
    kind, _, rest = socket_spec.partition(":")
    if kind == "unix":
        return rest
    port, _, host = rest.partition("@")
    return host, int(port)


# -- output ------------------------------------------------------------------------------------


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


def stop_milters(milters: Sequence[tuple[str, Any]]) -> None:
    """SIGTERM every milter at once, then wait for each (libmilter takes up to ~5 s to
    notice), killing what does not stop."""
    for _, process in milters:
        if process.alive():
            with contextlib.suppress(ProcessLookupError):
                process.proc.send_signal(signal.SIGTERM)
    for _, process in milters:
        process.stop(timeout=10)


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


# -- main --------------------------------------------------------------------------------------


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


def benchmark(args: argparse.Namespace) -> int:
    """Set up, warm up, measure, report; clean up whatever happens."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.support.dnsserver import TestDnsServer
    from tests.support.mxguard_proc import MilterStartError, MxguardProcess

    info = machine_info()
    seconds = None if args.count is not None else args.seconds
    with contextlib.ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mxguard-bench-")))
        try:
            dkim_key = None if args.no_dkim else make_dkim_key(work_dir)
            workload, probe = make_workloads(args.body_bytes, args.chunk_size, dkim_key)
            dns_server = stack.enter_context(TestDnsServer(ZONES.read_text()))
            if dkim_key is not None:
                add_dkim_record(dns_server, dkim_key[1])
            floor = MxguardProcess(
                {"milter": {"socket": milter_socket(args.socket, work_dir, "floor")}},
                work_dir=work_dir / "floor",
                command=[sys.executable, str(NOOP_MILTER), "{socket}"],
            )
            milters = [("floor", floor)]
            stack.callback(stop_milters, milters)
            floor.start()
            mxguard = MxguardProcess(
                mxguard_config(
                    milter_socket(args.socket, work_dir, "mxguard"), dns_server.address, work_dir
                ),
                work_dir=work_dir / "mxguard",
                command=mxguard_command(),
            )
            milters.append(("mxguard", mxguard))
            mxguard.start()
        except (MilterStartError, OSError, subprocess.CalledProcessError, RuntimeError) as error:
            print(f"bench: set-up failed: {error}", file=sys.stderr)
            return 2
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
        txn = workload.transactions[0]
        print(
            f"message: {len(txn.headers)} header fields "
            f"({'DKIM-signed' if dkim_key else 'unsigned'}), body {len(txn.body)} bytes in "
            f"{-(-len(txn.body) // args.chunk_size)} BODY chunk(s), 1 or 2 recipients; "
            f"client {CLIENT_IP} ({CLIENT_NAME}), DNS on {dns_server.address}"
        )

        options = ClientOptions(args.per_connection, args.reply_timeout, args.quickack)
        common = {"sessions": args.sessions, "clients": args.clients}
        failures: list[str] = []
        try:
            # The relay probe: proof that mxguard's checks run for this client.
            probe_result = Driver(socket_address(mxguard.socket), probe, options).run(
                1, time.monotonic(), None, 1
            )
            if probe_result.errors or not probe_result.refusals:
                failures.append(f"relay probe failed: {dict(probe_result.errors)}")
            else:
                edits = ", ".join(sorted(probe_result.header_edits)) or "none"
                # As the MTA shows it: Postfix and Sendmail turn the %% of a reply into %.
                shown = probe_result.refusals[0].replace("%%", "%")
                print(f"relay probe: RCPT <{RELAY_TRICK}> -> {shown}")
                print(f"mxguard header edits at end of message: {edits}")
            for name, process in milters:
                assert process.pid is not None
                warm = run_phase(
                    name,
                    socket_address(process.socket),
                    process.pid,
                    workload,
                    options,
                    seconds=args.warmup,
                    count=None,
                    **common,
                )
                if warm.errors:
                    print_errors(warm)
                    failures.append(f"{name}: {warm.error_count} errors during the warm-up")
            totals = {name: Phase(name) for name, _ in milters}
            for _ in range(args.rounds):
                for name, process in milters:
                    assert process.pid is not None
                    totals[name].add(
                        run_phase(
                            name,
                            socket_address(process.socket),
                            process.pid,
                            workload,
                            options,
                            seconds=seconds,
                            count=args.count,
                            **common,
                        )
                    )
        except RuntimeError as error:
            print(f"bench: {error}", file=sys.stderr)
            return 2

        phases = list(totals.values())
        print()
        print_table(phases)
        floor_rate = totals["floor"].rate
        ratio = totals["mxguard"].rate / floor_rate if floor_rate else float("nan")
        print(f"mxguard/floor transactions per second: {ratio:.2f}")
        for phase in phases:
            if phase.errors:
                print_errors(phase)
                failures.append(f"{phase.name}: {phase.error_count} failed transactions")
            if phase.share(phase.client_cpu) > 90 * args.clients:
                print(
                    f"warning: the client used {phase.share(phase.client_cpu):.0f}% of a core "
                    f"against {phase.name}: it may be the bottleneck (try --clients 2)"
                )
        if args.json:
            report = {
                "machine": info,
                "settings": {
                    **common,
                    "per_connection": args.per_connection,
                    "reply_timeout": args.reply_timeout,
                    "socket": args.socket,
                    "quickack": args.quickack,
                    "seconds": seconds,
                    "count": args.count,
                    "rounds": args.rounds,
                    "warmup_seconds": args.warmup,
                    "body_bytes": len(workload.transactions[0].body),
                    "chunk_size": args.chunk_size,
                    "dkim_signed": dkim_key is not None,
                    "mxguard_log_level": "warning",
                },
                "results": {phase.name: phase.summary() for phase in phases},
                "ratio_mxguard_to_floor": round(ratio, 3),
                "relay_probe": [text.replace("%%", "%") for text in probe_result.refusals[:1]],
                "failures": failures,
            }
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        if failures:
            for failure in failures:
                print(f"FAILED: {failure}", file=sys.stderr)
            log_tail = mxguard.log_text()[-2000:]
            if log_tail:
                print(f"--- end of the mxguard log ---\n{log_tail}", file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
