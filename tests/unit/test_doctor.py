"""doctor's checks on given postconf values (the e2e test runs it against real Postfix)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from mxguard import config, doctor


def settings(socket_spec: str):
    return config.load("t.ini", text=f"[milter]\nsocket = {socket_spec}\nuser =\n")


def test_a_socket_inside_the_queue_directory_may_be_named_relative_to_it() -> None:
    names = doctor.postfix_names(
        "unix:/var/spool/postfix/mxguard/mxguard.sock", "/var/spool/postfix"
    )
    assert names == {
        "unix:/var/spool/postfix/mxguard/mxguard.sock",
        "unix:mxguard/mxguard.sock",
    }
    assert "inet:127.0.0.1:8894" in doctor.postfix_names("inet:8894@127.0.0.1", "/q")


def test_outside_the_chroot_the_fix_says_where_to_put_the_socket() -> None:
    values = {"smtpd_milters": "", "non_smtpd_milters": "", "queue_directory": "/var/spool/postfix"}
    [smtpd, non_smtpd] = doctor.check_milters(settings("unix:/run/mxguard/mxguard.sock"), values)
    assert not smtpd.ok and "unix:mxguard/mxguard.sock" in smtpd.fix
    assert non_smtpd.ok and non_smtpd.note


def test_socket_the_postfix_user_cannot_write(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    path = tmp_path / "mxguard.sock"
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(path))
        values = {"mail_owner": "postfix"}
        os.chmod(path, 0o600)  # root's only
        [finding] = doctor.check_socket(settings(f"unix:{path}"), values)
        assert not finding.ok and "postfix cannot write to" in finding.text
        assert finding.fix.startswith("adduser postfix ")
        os.chmod(path, 0o666)
        [finding] = doctor.check_socket(settings(f"unix:{path}"), values)
        assert finding.ok
