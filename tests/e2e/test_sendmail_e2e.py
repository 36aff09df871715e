"""mxguard behind a real Sendmail 8.17, built from contrib/sendmail/mxguard.m4.

Debian's sendmail-bin conflicts with postfix, so it is not installed: ``make test`` unpacks it
(``scripts/sendmail-unpacked.sh``) and this test runs that binary with its own .cf, on a
loopback port, in a UTS namespace whose host name is a FQDN (without one Sendmail sleeps a
minute at start). Messages stay in the queue (delivery mode queue-only), where the header
fields mxguard added can be read. Sendmail refuses a milter socket below a world-writable
directory, so everything lives under /run, not /tmp.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsserver import TestDnsServer
from tests.support.mxguard_proc import MxguardProcess
from tests.support.postfix import free_tcp_port

pytestmark = pytest.mark.usefixtures("requires_mxguard")

REPO = Path(__file__).resolve().parents[2]
UNPACKED = Path(os.environ.get("MXGUARD_SENDMAIL_ROOT", "/var/cache/mxguard-test/sendmail/root"))
SENDMAIL = UNPACKED / "usr" / "libexec" / "sendmail" / "sendmail"
LIBRARIES = UNPACKED / "usr" / "lib" / "x86_64-linux-gnu"


def sendmail_mc(base: Path, port: int) -> str:
    return f"""divert(-1)
include(`{UNPACKED}/usr/share/sendmail/cf/m4/cf.m4')
OSTYPE(`linux')dnl
define(`QUEUE_DIR', `{base}/queue')dnl
define(`confSERVICE_SWITCH_FILE', `{base}/service.switch')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confDELIVERY_MODE', `queueonly')dnl
define(`confPID_FILE', `{base}/sendmail.pid')dnl
define(`STATUS_FILE', `{base}/statistics')dnl
define(`ALIAS_FILE', `')dnl
FEATURE(`accept_unresolvable_domains')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
define(`MXGUARD_SOCKET', `local:{base}/run/mxguard.sock')dnl
include(`{REPO}/contrib/sendmail/mxguard.m4')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""


def wait_for_banner(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sendmail exited with {process.returncode}")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as probe:
                probe.noop()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("sendmail did not answer")


@pytest.fixture(scope="module")
def sendmail(dns_server: TestDnsServer) -> Iterator[tuple[int, Path]]:
    """Sendmail on a loopback port with mxguard on a unix socket: (port, queue directory)."""
    assert SENDMAIL.exists(), f"{SENDMAIL} missing: run `make test` (it unpacks Sendmail)"
    base = Path(f"/run/mxguard-e2e-sendmail-{os.getpid()}")
    shutil.rmtree(base, ignore_errors=True)
    for directory, mode in ((base, 0o755), (base / "queue", 0o700), (base / "run", 0o750)):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(mode)
    (base / "service.switch").write_text("hosts files\n")
    port = free_tcp_port()
    cf = subprocess.run(
        ["m4"], input=sendmail_mc(base, port), capture_output=True, text=True, check=True
    ).stdout
    (base / "test.cf").write_text(cf)
    mxguard = MxguardProcess(
        {
            "milter": {
                "socket": f"unix:{base}/run/mxguard.sock",
                "hostnames": "mx.example.test",
                "local_domains": "example.test",
                "trusted_networks": "192.0.2.0/24",
                "authserv_id": "mx.example.test",
            },
            "dns": {"nameservers": dns_server.address, "timeout": "2s"},
            "state": {"url": f"sqlite:///{base}/state.db"},
        },
        work_dir=base / "mxguard",
    ).start()
    command = f"hostname mx.example.test; exec {SENDMAIL} -C {base}/test.cf -bD"
    process = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", command],
        env={**os.environ, "LD_LIBRARY_PATH": str(LIBRARIES)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_banner(port, process)
        yield port, base / "queue"
    finally:
        process.terminate()
        process.wait(timeout=20)
        mxguard.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_relay_trick_refused_and_clean_message_accepted_with_our_headers(
    sendmail: tuple[int, Path],
) -> None:
    port, queue = sendmail
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.sender.example", timeout=60) as c:
        assert c.ehlo()[0] == 250
        assert c.mail("someone@sender.example")[0] == 250
        code, text = c.rcpt("<alice%evil.example@example.test>")
        assert code == 550 and b"5.7.1" in text and b"relay: percent hack not allowed" in text
        assert c.rcpt("alice@example.test")[0] == 250
        code, text = c.data(
            b"From: Someone <someone@sender.example>\r\nTo: alice@example.test\r\n"
            b"Subject: through sendmail\r\nMessage-ID: <sm1@sender.example>\r\n\r\nHello.\r\n"
        )
        assert code == 250, text
    [queued] = [path.read_text(errors="replace") for path in queue.glob("qf*")]
    assert "H??Authentication-Results: mx.example.test;" in queued
    assert "spf=pass smtp.mailfrom=someone@sender.example" in queued
    assert "H??X-MXGuard: mx.example.test;" in queued
