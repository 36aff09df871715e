"""The milter socket on disk: directory, stale files, live sockets, mode, fallback."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from mxguard.core import config
from mxguard.core.errors import ConfigError
from mxguard.daemon import sockets


@pytest.mark.parametrize(
    ("written", "parsed"),
    [
        ("inet:8894", "inet:8894@127.0.0.1"),
        ("inet6:8894", "inet6:8894@[::1]"),
        ("inet:8894@0.0.0.0", "inet:8894@0.0.0.0"),  # an address given on purpose
        ("unix:/run/mxguard/mxguard.sock", "unix:/run/mxguard/mxguard.sock"),
    ],
)
def test_inet_binds_loopback_unless_an_address_is_given(written: str, parsed: str) -> None:
    settings = config.load("t.ini", text=f"[milter]\nsocket = {written}\n")
    assert settings.milter.socket == parsed


def test_directory_is_made_and_a_stale_socket_removed(tmp_path: Path) -> None:
    path = tmp_path / "run" / "mxguard" / "mxguard.sock"
    assert sockets.prepare(f"unix:{path}") is True
    assert path.parent.is_dir() and stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # bound, never listening: what a crash leaves behind
    assert path.exists()
    assert sockets.prepare(f"unix:{path}") is False
    assert not path.exists()


def test_a_live_socket_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "mxguard.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(ConfigError, match="is in use by a running process"):
            sockets.prepare(f"unix:{path}")
    assert path.exists()


def test_directory_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"\[milter\] socket: cannot create the directory"):
        sockets.prepare(f"unix:{blocker}/sub/mxguard.sock")


def test_socket_gets_mode_0660_and_the_milter_user(tmp_path: Path) -> None:
    path = tmp_path / "made" / "mxguard.sock"
    created = sockets.prepare(f"unix:{path}")
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(path))
        nobody = (65534, 65534)
        sockets.finish(f"unix:{path}", nobody if os.geteuid() == 0 else None, created)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    if os.geteuid() == 0:
        assert (path.stat().st_uid, path.stat().st_gid) == nobody
        assert path.parent.stat().st_uid == 65534  # we made the directory: it is the milter's


def test_unprivileged_run_falls_back_to_the_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")  # no one, not even root, can make a directory below a file
    spec = sockets.usable_spec(f"unix:{blocker}/run/mxguard.sock")
    assert spec == f"unix:{tmp_path}/mxguard/mxguard.sock"
    assert sockets.usable_spec("inet:8894@127.0.0.1") == "inet:8894@127.0.0.1"
