"""Where the log goes: syslog with ident, pid and facility, or stderr."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from mxguard.core import config
from mxguard.daemon import logsetup


def test_syslog_gets_ident_pid_and_the_mail_facility(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "log"
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(fake))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(fake))
        syslog.settimeout(5)
        logsetup.configure("info", "syslog", "mail")
        try:
            logging.getLogger("mxguard.decision").info("4XQ: stage=rcpt check=relay")
            received = syslog.recv(4096).decode()
        finally:
            logsetup.configure("warning")
    # <priority> = facility mail (2) * 8 + info (6) = 22
    assert received.startswith(f"<22>mxguard[{os.getpid()}]: 4XQ: stage=rcpt check=relay")


def test_syslog_without_dev_log_falls_back_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(tmp_path / "missing"))
    logsetup.configure("info", "syslog", "local3")
    try:
        logging.getLogger("mxguard").info("hello")
    finally:
        logsetup.configure("warning")
    err = capsys.readouterr().err
    assert "[log] target = syslog: no" in err and "hello" in err


def test_log_options() -> None:
    settings = config.load("t.ini", text="[log]\ntarget = syslog\nfacility = local3\n")
    assert (settings.log.target, settings.log.facility, settings.log.log_accepts) == (
        "syslog",
        "local3",
        True,
    )
    with pytest.raises(config.ConfigError, match=r"\[log\] facility: expected one of mail"):
        config.load("t.ini", text="[log]\nfacility = kern\n")
