"""SIGUSR1 in the middle of traffic: a reload never stops reloading, never breaks a connection
that is open across it, and keeps what only a restart can change."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from miltertest import constants as C

from tests.support.dnsserver import TestDnsServer
from tests.support.mxguard_proc import MxguardProcess, write_ini

from .conftest import start_mxguard
from .test_protocol import open_transaction


def reload_with(process: MxguardProcess, changes: dict[str, dict[str, str]]) -> str:
    """Rewrite the INI with ``changes``, send SIGUSR1 and return what the reload logged."""
    config = {section: dict(values) for section, values in process.config.items()}
    for section, values in changes.items():
        config.setdefault(section, {}).update(values)
    process.config = config
    write_ini(process.ini_path, config)
    since = process.log_size()
    process.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while True:
        text = process.log_text(since)
        if "configuration reloaded" in text or "reload refused" in text or "reload failed" in text:
            time.sleep(0.2)  # the rest of a refusal's lines
            return process.log_text(since)
        assert time.monotonic() < deadline, text
        time.sleep(0.05)


def test_a_file_path_with_a_nul_byte_is_refused_and_reloading_goes_on(tmp_path: Path) -> None:
    """A NUL byte used to raise ValueError in the check's prepare, which ended the reload
    thread: every later SIGUSR1 was ignored."""
    process = start_mxguard(tmp_path)
    try:
        text = reload_with(process, {"recipients": {"file": "/etc/recip\x00ients"}})
        assert "reload refused, keeping the running configuration: " in text
        assert "[recipients] file: expected a file path (empty: none), got a NUL byte" in text
        recipients = tmp_path / "recipients"
        recipients.write_text("alice@example.test\n")
        assert "configuration reloaded" in reload_with(
            process, {"recipients": {"file": str(recipients)}}
        )
        client = open_transaction(process)
        assert client.rcpt("<carol@example.test>")[1]["smtpcode"] == "550"
        client.quit()
    finally:
        process.stop()


def test_a_refused_reload_logs_one_line_per_problem(tmp_path: Path) -> None:
    process = start_mxguard(tmp_path)
    try:
        text = reload_with(process, {"milter": {"mode": "sometimes"}, "dns": {"timeout": "soon"}})
        refused = [line for line in text.splitlines() if "reload refused" in line]
        assert len(refused) == 2, text
        assert "[milter] mode: expected enforce or monitor, got 'sometimes'" in refused[0]
        assert "[dns] timeout: expected a duration" in refused[1]
    finally:
        process.stop()


def test_options_that_need_a_restart_keep_their_running_value(tmp_path: Path) -> None:
    process = start_mxguard(tmp_path)
    running = process.socket
    try:
        text = reload_with(
            process,
            {"milter": {"socket": f"unix:{tmp_path}/other.sock", "timeout": "1m"}},
        )
        assert f"[milter] socket changed to unix:{tmp_path}/other.sock: needs a restart; " in text
        assert f"keeping {running}" in text
        assert "[milter] timeout changed to 1m: needs a restart; keeping 10m" in text
        assert "configuration reloaded" in text
        client = open_transaction(process)  # still on the running socket
        assert client.rcpt("<a%b@example.test>")[1]["smtpcode"] == "550"
        client.quit()
        assert not (tmp_path / "other.sock").exists()
    finally:
        process.stop()


SIGNED = (
    "v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.example; s=sel; h=from; "
    "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA=="
)


def test_a_connection_open_across_a_dns_change_keeps_its_resolver(tmp_path: Path) -> None:
    """A reload that changes [dns] used to close the old resolver at once: the next lookups of
    a connection still on the old configuration failed, and it got 451 4.3.0."""
    zones = """
$TTL 300
sender.example.        IN SOA ns.sender.example. h.sender.example. 1 3600 600 86400 60
_dmarc.sender.example. IN TXT "v=DMARC1; p=none"
"""
    with TestDnsServer(zones) as dns:
        server = {"nameservers": dns.address, "timeout": "2s"}
        process = start_mxguard(tmp_path, {"dns": server})
        try:
            ongoing = open_transaction(process)
            assert ongoing.rcpt("<alice@example.test>") == (C.SMFIR_CONTINUE, {})
            changed = reload_with(process, {"dns": {**server, "timeout": "3s"}})
            assert "configuration reloaded" in changed
            # At end of message the DKIM key and the DMARC policy are asked for together,
            # through the resolver of the configuration this connection started with.
            ongoing.header("DKIM-Signature", SIGNED)
            ongoing.header("From", "Sender <sender@sender.example>")
            replies = ongoing.end_of_message()
            assert replies[-1][0] == C.SMFIR_CONTINUE, replies
            ongoing.quit()
            results = next(
                args["value"]
                for cmd, args in replies
                if cmd == C.SMFIR_INSHEADER and args["name"] == "Authentication-Results"
            )
            assert "dmarc=" in results and "dkim=" in results, results
            assert "internal error" not in process.log_text()
        finally:
            process.stop()
