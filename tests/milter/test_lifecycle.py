"""The process: SIGUSR1 reloads (and refuses a broken file), SIGTERM stops cleanly."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from miltertest import constants as C

from tests.support.mxguard_proc import MxguardProcess, write_ini

from .conftest import start_mxguard
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

        reload_with_mode(process, "monitor")
        assert wait_for(lambda: "configuration reloaded" in process.log_text())
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
