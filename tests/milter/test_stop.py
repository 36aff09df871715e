"""SIGTERM: stop accepting, let the transactions in flight finish (bounded), then exit."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
from miltertest import constants as C
from miltertest.client import MilterError

from tests.support.milterclient import MtaClient
from tests.support.mxguard_proc import MxguardProcess

from .conftest import start_mxguard
from .test_protocol import open_transaction


def exits(process: MxguardProcess, timeout: float) -> int:
    assert process.proc is not None
    return process.proc.wait(timeout=timeout)


def unix_client(path: Path) -> MtaClient:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(10)
    connection.connect(str(path))
    client = MtaClient(connection)
    client.negotiate()
    client.macros(C.SMFIC_CONNECT, j="mx.example.test", **{"{daemon_name}": "mx"})
    return client


def wait_for_log(process: MxguardProcess, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log_text():
        assert time.monotonic() < deadline, process.log_text()
        time.sleep(0.05)


def test_an_idle_mxguard_stops_at_once(tmp_path: Path) -> None:
    """libmilter alone looks for a stop request every 5 seconds (2.7-5.4 s measured)."""
    process = start_mxguard(tmp_path)
    started = time.monotonic()
    process.signal(signal.SIGTERM)
    assert exits(process, 20) == 0
    assert time.monotonic() - started < 2.0
    assert "stopped" in process.log_text()


def test_a_transaction_in_flight_finishes_after_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "mxguard.sock"
    process = start_mxguard(tmp_path, {"milter": {"socket": f"unix:{path}"}})
    ongoing = unix_client(path)
    ongoing.connect_step("203.0.113.9")
    ongoing.helo("client.example")
    assert ongoing.mail("<sender@elsewhere.example>") == (C.SMFIR_CONTINUE, {})
    idle = unix_client(path)  # connected, between transactions
    idle.connect_step("203.0.113.10")
    idle.helo("other.example")
    process.signal(signal.SIGTERM)
    wait_for_log(process, "waiting up to 10s for 1 transaction(s) in flight")
    # The MTA's next connection fails at once (milter_default_action applies), and a new
    # mxguard could bind the path while this one finishes.
    assert not path.exists()
    assert process.alive()
    time.sleep(0.5)  # libmilter's own stop would have ended its worker pool by now
    # The transaction in flight gets its real answers, not a reset connection.
    assert ongoing.rcpt("<a%b@example.test>")[1]["smtpcode"] == "550"
    assert ongoing.rcpt("<alice@example.test>") == (C.SMFIR_CONTINUE, {})
    ongoing.header("From", "Sender <sender@elsewhere.example>")
    assert ongoing.end_of_message()[-1][0] == C.SMFIR_CONTINUE
    # A new transaction on an open connection is asked to come back later.
    refused = idle.mail("<late@elsewhere.example>")
    assert refused is not None and refused[1]["smtpcode"] == "451", refused
    assert refused[1]["text"].startswith("4.3.2 mxguard is stopping")
    assert exits(process, 10) == 0
    log = process.log_text()
    assert "SIGTERM: stopping" in log and "unfinished" not in log and "stopped" in log


def test_stop_timeout_bounds_the_wait(tmp_path: Path) -> None:
    process = start_mxguard(tmp_path, {"milter": {"stop_timeout": "1s"}})
    stuck = open_transaction(process)  # never finishes
    started = time.monotonic()
    process.signal(signal.SIGTERM)
    assert exits(process, 20) == 0
    assert 1.0 <= time.monotonic() - started < 4.0
    assert "stopping with 1 transaction(s) unfinished after 1s" in process.log_text()
    with pytest.raises((OSError, MilterError)):  # the connection is gone
        stuck.rcpt("<alice@example.test>")
