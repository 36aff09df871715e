"""The process: SIGUSR1 reloads (and refuses a broken file), SIGTERM stops cleanly."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from miltertest import constants as C

from tests.support.mxguard_proc import MilterStartError, MxguardProcess, free_port, write_ini

from .conftest import BASE_CONFIG, start_mxguard
from .test_protocol import open_transaction


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def reload_with_mode(process: MxguardProcess, mode: str) -> None:
    """Rewrite the INI with another [milter] mode and send SIGUSR1."""
    config = {section: dict(values) for section, values in process.config.items()}
    config["milter"]["mode"] = mode
    write_ini(process.ini_path, config)
    process.proc.send_signal(signal.SIGUSR1)


def test_sigusr1_reloads_and_keeps_the_old_config_when_the_new_one_is_broken(
    tmp_path: Path,
) -> None:
    process = start_mxguard(tmp_path)
    try:
        client = open_transaction(process)
        assert client.rcpt("<a%b@example.test>")[1]["smtpcode"] == "550"
        client.quit()

        reload_with_mode(process, "sometimes")
        assert wait_for(lambda: "reload refused" in process.log_text())
        assert "[milter] mode: expected enforce or monitor" in process.log_text()
        client = open_transaction(process)
        assert client.rcpt("<a%b@example.test>")[1]["smtpcode"] == "550"
        client.quit()

        # A session open across the reload is not dropped: it finishes under the settings it
        # started with, and the next session gets the new ones.
        ongoing = open_transaction(process)
        reload_with_mode(process, "monitor")
        assert wait_for(lambda: "configuration reloaded" in process.log_text())
        assert ongoing.rcpt("<a%b@example.test>")[1]["smtpcode"] == "550"
        assert ongoing.rcpt("<alice@example.test>") == (C.SMFIR_CONTINUE, {})
        assert ongoing.end_of_message()[-1][0] == C.SMFIR_CONTINUE
        ongoing.quit()
        client = open_transaction(process)
        assert client.rcpt("<a%b@example.test>") == (C.SMFIR_CONTINUE, {})
        client.quit()
    finally:
        process.stop()


def test_sigterm_stops_with_status_0(tmp_path: Path) -> None:
    process = start_mxguard(tmp_path)
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(timeout=20) == 0
    assert "stopped" in process.log_text()


def test_unix_socket_privilege_drop_and_no_takeover(tmp_path: Path) -> None:
    """As root: the socket is 0660 and the milter user's, the process runs as that user, and
    a second mxguard on the same socket stops instead of stealing it."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (make test runs as root in CI)")
    # pytest's own directories are mode 0700: nobody could not reach its state there (and the
    # self-test would rightly stop mxguard), so this test works under a 0755 directory.
    tmp_path = Path(tempfile.mkdtemp(prefix="mxguard-drop-", dir="/tmp"))
    tmp_path.chmod(0o755)
    socket_path = tmp_path / "run" / "mxguard.sock"
    state = tmp_path / "state"
    config = {
        "milter": {"socket": f"unix:{socket_path}", "user": "nobody"},
        "dns": {"nameservers": "127.0.0.1:9", "timeout": "1s"},
        "state": {"url": f"sqlite:///{state}/state.db"},
    }
    nobody = pwd.getpwnam("nobody")
    first = MxguardProcess(config, work_dir=tmp_path / "first").start()
    try:
        mode = socket_path.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o660
        assert (mode.st_uid, mode.st_gid) == (nobody.pw_uid, nobody.pw_gid)
        status = Path(f"/proc/{first.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
        assert state.stat().st_uid == nobody.pw_uid  # the state directory it made is its own
        # The socket answers (the first one's), but the second never serves: it exits.
        second = MxguardProcess(config, work_dir=tmp_path / "second")
        with pytest.raises(MilterStartError):
            second.start()
        assert second.proc is not None and second.proc.wait(timeout=20) == 2
        assert "is in use by a running process" in second.log_text()
        assert first.alive() and socket_path.exists()
    finally:
        first.stop()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_systemd_is_told_ready_once_the_socket_is_open(tmp_path: Path) -> None:
    """Type=notify: READY=1 arrives on NOTIFY_SOCKET, after the socket accepts connections."""
    channel_path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as channel:
        channel.bind(str(channel_path))
        channel.settimeout(20)
        config = {section: dict(values) for section, values in BASE_CONFIG.items()}
        config["milter"]["socket"] = f"unix:{tmp_path}/mxguard.sock"
        config["state"] = {"url": f"sqlite:///{tmp_path}/state.db"}
        process = MxguardProcess(
            config, work_dir=tmp_path / "work", env={"NOTIFY_SOCKET": str(channel_path)}
        ).start()
        try:
            message = channel.recv(4096).decode()
            assert message.startswith("READY=1\nSTATUS=listening on unix:")
            assert (tmp_path / "mxguard.sock").exists()
            process.signal(signal.SIGUSR1)
            assert channel.recv(4096).decode() == "RELOADING=1"
            assert channel.recv(4096).decode().startswith("READY=1")
        finally:
            process.stop()


def test_systemd_unit_verifies() -> None:
    """contrib/systemd/mxguard.service passes systemd-analyze verify (binaries pointed at the
    virtualenv's, since /usr/bin/mxguard exists only once packaged)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of systemd, which Debian always has"
    unit = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "mxguard.service"
    text = unit.read_text()
    for required in (
        "Type=notify", "User=mxguard", "Group=mxguard", "RuntimeDirectory=mxguard",
        "RuntimeDirectoryMode=0750", "UMask=0007", "ProtectSystem=strict", "NoNewPrivileges=yes",
        "PrivateTmp=yes", "RestrictAddressFamilies=", "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service", "ReadWritePaths=",
        "ExecReload=/usr/bin/mxguard check-config", "ExecReload=/bin/kill -USR1 $MAINPID",
    ):  # fmt: skip
        assert required in text, required
    venv_mxguard = str(Path(sys.executable).with_name("mxguard"))
    work = Path(tempfile.mkdtemp())
    copy = work / "mxguard.service"
    copy.write_text(text.replace("/usr/bin/mxguard", venv_mxguard))
    # verify runs man(1) for each Documentation=man: entry; our pages, as a package installs them.
    for page, section in (("mxguard.8", "man8"), ("mxguard.ini.5", "man5")):
        (work / "man" / section).mkdir(parents=True, exist_ok=True)
        shutil.copy(unit.parents[2] / "man" / page, work / "man" / section / page)
    environment = {**os.environ, "MANPATH": str(work / "man")}
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sigusr1_reloads_data_files(tmp_path: Path) -> None:
    """The recipients file is read again on SIGUSR1, with the rest of the configuration."""
    recipients = tmp_path / "recipients"
    recipients.write_text("alice@example.test\n")
    process = start_mxguard(tmp_path, {"recipients": {"file": str(recipients)}})
    try:
        client = open_transaction(process)
        assert client.rcpt("<carol@example.test>")[1]["smtpcode"] == "550"
        client.quit()
        before = recipients.stat()
        recipients.write_text("alice@example.test\ncarol@example.test\n")
        # The same modification time: the recipients check's own 5-second look at the file's
        # mtime sees nothing new, so only the reload can bring carol in.
        os.utime(recipients, ns=(before.st_atime_ns, before.st_mtime_ns))
        process.signal(signal.SIGUSR1)
        assert wait_for(lambda: "configuration reloaded" in process.log_text())
        client = open_transaction(process)
        assert client.rcpt("<carol@example.test>") == (C.SMFIR_CONTINUE, {})
        client.quit()
    finally:
        process.stop()


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_metrics_count_verdicts_and_reloads_without_per_address_labels(tmp_path: Path) -> None:
    port = free_port()
    process = start_mxguard(tmp_path, {"metrics": {"port": str(port)}})
    try:
        client = open_transaction(process)
        assert client.rcpt("<a%b@example.test>")[1]["smtpcode"] == "550"
        assert client.rcpt("<alice@example.test>") == (C.SMFIR_CONTINUE, {})
        client.header("From", "Sender <sender@elsewhere.example>")
        assert client.end_of_message()[-1][0] == C.SMFIR_CONTINUE
        client.quit()
        process.signal(signal.SIGUSR1)
        assert wait_for(lambda: "configuration reloaded" in process.log_text())
        text = _metrics(port)
        assert 'mxguard_verdicts_total{action="reject",check="relay",stage="rcpt"} 1.0' in text
        assert 'mxguard_verdicts_total{action="accept",check="-",stage="eom"} 1.0' in text
        assert "mxguard_transactions_total 1.0" in text
        assert 'mxguard_reloads_total{result="ok"} 1.0' in text
        assert "mxguard_store_errors_total 0.0" in text
        assert "mxguard_dns_lookup_seconds_bucket" in text
        assert "example" not in text and "203.0.113" not in text  # no domain, no client
    finally:
        process.stop()


def test_metrics_port_in_use_is_logged_and_the_milter_runs_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_mxguard(tmp_path, {"metrics": {"port": str(port)}})
        try:
            assert "running without metrics" in process.log_text()
            client = open_transaction(process)
            assert client.rcpt("<a%b@example.test>")[1]["smtpcode"] == "550"
            client.quit()
        finally:
            process.stop()


def test_a_user_that_does_not_exist_stops_startup_clearly(tmp_path: Path) -> None:
    process = MxguardProcess(
        {
            "milter": {"socket": f"unix:{tmp_path}/mxguard.sock", "user": "no-such-user-mxg"},
            "state": {"url": f"sqlite:///{tmp_path}/state.db"},
        },
        work_dir=tmp_path / "work",
    )
    with pytest.raises(MilterStartError):
        process.start()
    assert process.proc is not None and process.proc.wait(timeout=10) == 2
    assert "[milter] user: expected an existing user, got 'no-such-user-mxg'" in process.log_text()
