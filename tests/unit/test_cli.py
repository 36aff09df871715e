"""The command line: check-config prints the effective settings or exits 2 with the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mxguard.daemon import logsetup, statedir
from mxguard.tools import cli

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "contrib" / "mxguard.ini"


def test_check_config_prints_effective_settings(tmp_path: Path, capsys) -> None:
    ini = tmp_path / "ok.ini"
    ini.write_text("[milter]\nlocal_domains = Example.ORG\n[dns]\ntimeout = 90s\n")
    assert cli.main(["check-config", "-c", str(ini)]) == 0
    out = capsys.readouterr().out
    assert "local_domains = example.org" in out
    assert "timeout = 90s" in out
    assert "[relay]\nenabled = yes\nmode = enforce" in out


def test_check_config_exits_2_naming_file_section_option(tmp_path: Path, capsys) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[dns]\ntimout = 3s\n")
    assert cli.main(["check-config", "-c", str(ini)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{ini}: [dns] timout: unknown option; did you mean 'timeout'?"
    )


@pytest.mark.parametrize(
    ("section", "option"),
    [("recipients", "file"), ("access", "files"), ("rdns", "patterns_file"),
     ("submission", "sender_map"), ("dkim_sign", "key_table")],
)  # fmt: skip
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_nul_byte_in_a_file_path_is_one_line_and_exit_2(
    tmp_path: Path, section: str, option: str, command: str
) -> None:
    """It used to reach the check's open() as ValueError: a traceback, exit 1."""
    ini = tmp_path / "nul.ini"
    ini.write_text(f"[{section}]\n{option} = /etc/mxguard/a\x00b\n")
    done = subprocess.run(
        [sys.executable, "-m", "mxguard", command, "-c", str(ini)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "milter")},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"{ini}: [{section}] {option}: expected "
        + (
            "a comma-separated list of file paths"
            if option == "files"
            else "a file path (empty: none)"
        )
        + ", got a NUL byte"
    ]


def test_run_exits_2_before_serving_on_a_bad_config(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[milter]\nmode = enforcing\n")
    done = subprocess.run(
        [sys.executable, "-m", "mxguard", "run", "-c", str(ini)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT / "milter")},
    )
    assert done.returncode == 2
    assert f"{ini}: [milter] mode: expected enforce or monitor, got 'enforcing'" in done.stderr


def test_missing_default_file_is_exit_2(tmp_path: Path, capsys) -> None:
    assert cli.main(["check-config", "-c", str(tmp_path / "nope.ini")]) == 2
    assert "nope.ini: cannot read" in capsys.readouterr().err


def test_shipped_config_is_valid(capsys) -> None:
    assert cli.main(["check-config", "-c", str(ROOT / "contrib" / "mxguard.ini")]) == 0


def test_state_falls_back_to_a_user_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    # A directory below a plain file cannot be created, not even by root.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/mxguard/state.db"
    assert statedir.effective_state_url(url) == f"sqlite:///{tmp_path}/xdg/mxguard/state.db"
    assert (tmp_path / "xdg" / "mxguard").is_dir()


def test_no_writable_state_directory_stops_startup(tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")  # nothing can be made below a file, by anyone
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker / "xdg"))
    ini = tmp_path / "m.ini"
    ini.write_text(f"[milter]\nuser =\n[state]\nurl = sqlite:///{blocker}/db/state.db\n")
    assert cli.main(["run", "-c", str(ini)]) == 2
    err = capsys.readouterr().err
    assert "[state] url: expected a directory mxguard can write, but neither" in err
    assert f"{blocker}/db" in err


def test_writable_state_directory_is_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state/state.db"
    assert statedir.effective_state_url(url) == url
    assert (tmp_path / "state").is_dir()
    assert statedir.effective_state_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_nagle_is_disabled_on_the_listening_tcp_socket() -> None:
    import socket

    from mxguard.daemon.server import _disable_nagle

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        _disable_nagle(f"inet:{port}@127.0.0.1")
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        accepted.close()
        client.close()


def test_check_config_reports_broken_data_file_lines(tmp_path: Path, capsys) -> None:
    access = tmp_path / "access"
    access.write_text("192.0.2.0/24 allow\nnot-a-key!! deny\n")
    ini = tmp_path / "ok.ini"
    ini.write_text(f"[access]\nfiles = {access}\n")
    assert cli.main(["check-config", "-c", str(ini)]) == 0
    assert f"{access}:2:" in capsys.readouterr().err


def test_check_config_never_prints_secrets(tmp_path: Path, capsys) -> None:
    ini = tmp_path / "secret.ini"
    ini.write_text("[backscatter]\nbatv_secret = new-s3cret, old-s3cret\n")
    assert cli.main(["check-config", "-c", str(ini)]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert "batv_secret = (2 hidden)" in out


def test_settings_get_the_usable_state_url_at_start_and_reload(tmp_path: Path, monkeypatch) -> None:
    from mxguard.core import config

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = config.load("t.ini", text=f"[state]\nurl = sqlite:///{blocker}/state.db\n")
    usable = statedir.with_usable_state(settings)
    assert usable.state.url == f"sqlite:///{tmp_path}/xdg/mxguard/state.db"
    assert usable.milter == settings.milter


def test_check_config_changed_prints_only_what_differs_from_the_defaults(
    tmp_path: Path, capsys
) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[milter]\nlocal_domains = example.org\nhostnames = mx.example.org\n"
        "authserv_id = mx.example.org\n"  # what the default gives: not a change
        "[dns]\ntimeout = 90s\ncache_size = 10000\n"  # cache_size as the default
        "[relay]\nmode = monitor\n[spf]\nmode = enforce\n"  # enforce is [milter] mode
    )
    assert cli.main(["check-config", "-n", "-c", str(ini)]) == 0
    sections, _, summary = capsys.readouterr().out.rpartition("\n;")
    assert sections == (
        "[milter]\nhostnames = mx.example.org\nlocal_domains = example.org\n\n"
        "[dns]\ntimeout = 90s\n\n"
        "[relay]\nmode = monitor\n"
    )
    assert summary.startswith(f" {ini}: valid; ") and "in monitor mode: relay" in summary


def test_check_config_ends_with_warnings_and_a_summary(tmp_path: Path, capsys) -> None:
    ini = tmp_path / "m.ini"
    ini.write_text("[dnsbl]\nzones = zen.example=1\nmode = monitor\n[greylist]\nenabled = no\n")
    assert cli.main(["check-config", "-c", str(ini)]) == 0
    *_, local, hostnames, summary = capsys.readouterr().out.splitlines()
    assert local.startswith("; warning: [milter] local_domains is empty")
    assert hostnames.startswith("; warning: [milter] hostnames is empty")
    assert summary.startswith(f"; {ini}: valid, 2 warnings above; 19 checks enabled (access, ")
    assert "greylist" not in summary
    assert "; idle until configured: access, rhsbl, recipients, dkim_sign;" in summary
    assert summary.endswith("; in monitor mode: dnsbl")


def test_check_config_quiet_prints_nothing_unless_the_file_is_broken(
    tmp_path: Path, capsys
) -> None:
    ini = tmp_path / "ok.ini"
    ini.write_text("[dns]\ntimeout = 5s\n")
    assert cli.main(["check-config", "--quiet", "-c", str(ini)]) == 0
    assert capsys.readouterr() == ("", "")
    ini.write_text("[dns]\ntimout = 5s\n")
    assert cli.main(["check-config", "-q", "-c", str(ini)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"{ini}: [dns] timout: unknown option; did you mean 'timeout'?\n"


@pytest.mark.parametrize("options", [[], ["-n"]], ids=["full", "changed"])
def test_check_config_into_a_closed_pipe_ends_quietly(options: list[str]) -> None:
    """``mxguard check-config | head``: no traceback once the reader has gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mxguard", "check-config", *options, "-c", str(SHIPPED)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT / "milter")},
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == cli.EXIT_BROKEN_PIPE == 141


def test_start_says_which_networks_skip_the_inbound_checks(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A new admin's swaks from localhost is trusted: the log says so, and what to do."""
    from mxguard.daemon import server

    monkeypatch.setattr(server, "serve", lambda settings: 0)
    ini = tmp_path / "m.ini"
    ini.write_text(f"[milter]\nuser =\n[state]\nurl = sqlite:///{tmp_path}/state.db\n")
    try:
        assert cli.main(["run", "-c", str(ini)]) == 0
    finally:
        logsetup.configure("warning")
    err = capsys.readouterr().err
    assert (
        "INFO mxguard: [milter] trusted_networks = 127.0.0.0/8, ::1/128: mail from these "
        "clients skips the inbound checks; to try them from this host, have Postfix pass an "
        "outside client's address with XCLIENT (README: Trying it from the MTA host)"
    ) in err
