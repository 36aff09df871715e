"""The client: one selector loop that plays the MTA in many milter sessions at once."""

from __future__ import annotations

import contextlib
import selectors
import socket
import time

from .client import ClientOptions, DriveResult
from .meters import own_cpu
from .plan import Plan, compile_plan
from .protocol import (
    EOM_EDITS,
    R_ACCEPT,
    R_CONTINUE,
    R_OPTNEG,
    R_REPLYCODE,
    R_SKIP,
    WAIT_BODY,
    WAIT_EOM,
    WAIT_RCPT_550,
    Address,
    Negotiated,
    added_header_name,
    describe_reply,
    optneg_packet,
)
from .session import Session, open_socket
from .workload import Workload


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
        cpu_start = own_cpu()
        begin = time.monotonic()
        if seconds is not None:
            self.stop_at = begin + seconds
        self.quota = count
        all_sessions = [Session() for _ in range(sessions)]
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
                        self._fail(session, f"{session.label()}: no reply in time")
        end = time.monotonic()
        self.selector.close()
        result = self.result
        result.wall = end - begin
        result.window = (self.stop_at if seconds is not None else end) - begin
        result.cpu = own_cpu() - cpu_start
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

    def _open(self, session: Session) -> None:
        """Open a new milter connection for the session and start negotiating."""
        if not self._more(time.monotonic()):
            return
        session.script = self._take_script()
        session.started = time.monotonic()
        try:
            sock = open_socket(self.address, self.reply_timeout)
        except OSError as error:
            # The milter is gone or refuses: count it, and stop this session.
            self.result.errors[f"connect: {error.strerror or error}"] += 1
            return
        session.attach(sock)
        self.selector.register(sock, selectors.EVENT_READ, session)
        self.live += 1
        self._send(session, self.optneg)

    def _close(self, session: Session, polite: bool) -> None:
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

    def _send(self, session: Session, data: bytes) -> None:
        """Write data; what the socket does not take now is written when it is writable."""
        session.sent_at = time.monotonic()
        assert session.sock is not None
        try:
            sent = session.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            self._fail(session, f"{session.label()}: send: {error.strerror or error}")
            return
        if sent < len(data):
            session.outgoing = memoryview(data)[sent:]
            self.selector.modify(
                session.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, session
            )

    def _flush(self, session: Session) -> None:
        """Write more of a pending packet."""
        if session.sock is None or session.outgoing is None:
            return
        try:
            sent = session.sock.send(session.outgoing)
        except BlockingIOError:
            return
        except OSError as error:
            self._fail(session, f"{session.label()}: send: {error.strerror or error}")
            return
        session.outgoing = session.outgoing[sent:]
        if not len(session.outgoing):
            session.outgoing = None
            self.selector.modify(session.sock, selectors.EVENT_READ, session)

    # Replies.

    def _readable(self, session: Session) -> None:
        """Read what arrived and handle every complete reply packet."""
        sock = session.sock
        assert sock is not None
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            self._fail(session, f"{session.label()}: recv: {error.strerror or error}")
            return
        if not data:
            self._fail(session, f"{session.label()}: the milter closed the connection")
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

    def _reply(self, session: Session, command: int, payload: bytes) -> bool:
        """Handle one reply; return False when the session's connection ended or changed."""
        if session.negotiating:
            if command != R_OPTNEG:
                self._fail(session, f"negotiation: {describe_reply(command, payload)}")
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
                name = added_header_name(command, payload)
                if name is not None:
                    self.result.header_edits[name] += 1
                return True
        elif kind == WAIT_RCPT_550:
            if command == R_REPLYCODE and payload.startswith(b"550 "):
                self.result.refusals.append(payload.rstrip(b"\0").decode("utf-8", "replace"))
                return self._advance(session, session.index + 1)
            expected = f"expected a 550 refusal, got {describe_reply(command, payload)}"
            self._fail(session, f"{label}: {expected}")
            return False
        elif command == R_CONTINUE:
            return self._advance(session, session.index + 1)
        elif command == R_ACCEPT:
            # Accepted without further checks: the MTA stops asking this milter.
            return self._done(session, end_connection=True)
        elif command == R_SKIP and kind == WAIT_BODY:
            return self._advance(session, len(session.steps) - 1)  # straight to EOM
        self._fail(session, f"{label}: {describe_reply(command, payload)}")
        return False

    def _advance(self, session: Session, index: int) -> bool:
        """Send the next step."""
        session.index = index
        self._send(session, session.steps[index][0])
        return session.sock is not None

    def _done(self, session: Session, end_connection: bool = False) -> bool:
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

    def _fail(self, session: Session, reason: str) -> None:
        """A transaction failed: count it, drop the connection, start afresh."""
        self.result.errors[reason] += 1
        self._close(session, polite=False)
        self._open(session)
