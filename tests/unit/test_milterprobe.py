"""doctor's milter probe against small servers: a milter, nothing, and things that are not
milters (tests/e2e/test_doctor_e2e.py probes a running mxguard)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mxguard.tools.milterprobe import Answer, negotiate

Serve = Callable[[socket.socket], None]


def read_packet(conn: socket.socket) -> bytes:
    (length,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
    return conn.recv(length, socket.MSG_WAITALL)


class Server:
    """A listener on a unix socket (or loopback TCP) whose one connection ``serve`` handles."""

    def __init__(self, serve: Serve, where: Path | None = None) -> None:
        if where is None:
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.address: str | tuple[str, int] = self.sock.getsockname()[:2]
        else:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(str(where))
            self.sock.listen()
            self.address = str(where)
        self.thread = threading.Thread(target=self._run, args=(serve,), daemon=True)
        self.thread.start()

    def _run(self, serve: Serve) -> None:
        conn, _ = self.sock.accept()
        with conn:
            serve(conn)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start Server instances; all are closed after the test."""
    started: list[Server] = []

    def start(serve: Serve, unix: bool = True) -> Server:
        started.append(Server(serve, tmp_path / "milter.sock" if unix else None))
        return started[-1]

    yield start
    for each in started:
        each.close()


def test_a_milter_answers_and_is_told_to_quit(server: Callable[..., Server]) -> None:
    received: list[bytes] = []

    def milter(conn: socket.socket) -> None:
        received.append(read_packet(conn))
        # Version 6, two actions, no steps left out, and a macro list as mxguard sends one.
        reply = b"O" + struct.pack("!III", 6, 0x11, 0) + struct.pack("!I", 1) + b"j {daemon_name}\0"
        conn.sendall(struct.pack("!I", len(reply)) + reply)
        received.append(read_packet(conn))

    for unix in (True, False):
        received.clear()
        milter_server = server(milter, unix)
        assert negotiate(milter_server.address) == Answer(version=6)
        milter_server.thread.join(timeout=5)
        assert received == [b"O" + struct.pack("!III", 6, 0x1FF, 0x1FFFFF), b"Q"]


def test_a_socket_with_nothing_behind_it(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # bound, never listening: what a killed milter leaves behind
    answer = negotiate(str(path))
    assert not answer.ok and answer.nobody and "connection refused" in answer.reason
    assert negotiate(str(tmp_path / "none.sock")) == Answer(reason="no such file", nobody=True)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    assert negotiate(("127.0.0.1", port)).nobody


def test_a_server_that_talks_first_is_not_a_milter(server: Callable[..., Server]) -> None:
    def smtp(conn: socket.socket) -> None:
        conn.sendall(b"220 mx.example.test ESMTP\r\n")
        conn.recv(100)

    answer = negotiate(server(smtp).address)
    assert not answer.ok and not answer.nobody
    assert answer.reason == "not a milter: it answered b'220 mx.example.test ESMTP\\r\\n'"


def test_a_server_that_answers_something_else_is_not_a_milter(
    server: Callable[..., Server],
) -> None:
    def http(conn: socket.socket) -> None:
        conn.recv(100)
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    answer = negotiate(server(http, unix=False).address)
    assert answer.reason.startswith("not a milter: it answered b'HTTP/1.0 400")


def test_a_milter_reply_that_is_no_negotiation(server: Callable[..., Server]) -> None:
    def confused(conn: socket.socket) -> None:
        read_packet(conn)
        reply = b"c" + bytes(12)  # SMFIR_CONTINUE, padded to a plausible length
        conn.sendall(struct.pack("!I", len(reply)) + reply)

    assert negotiate(server(confused).address).reason.startswith("not a milter: it answered")


def test_a_listener_that_never_answers(server: Callable[..., Server]) -> None:
    done = threading.Event()
    answer = negotiate(server(lambda conn: done.wait(5)).address, timeout=0.3)
    done.set()
    assert answer.reason == "no answer within 0.3s (not a milter, or a hung one)"


def test_a_listener_that_hangs_up(server: Callable[..., Server]) -> None:
    answer = negotiate(server(lambda conn: conn.recv(100)).address)
    assert answer.reason.startswith("the connection was closed without an answer")
