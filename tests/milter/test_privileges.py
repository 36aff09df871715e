"""An install the dropped user cannot read: mxguard loads what it needs first, and proves it.

mxguard is installed (not editable) into a virtualenv under a mode 0700 directory, as a clone
in /root would be, started as root with ``[milter] user = nobody``, and asked real questions
through the test DNS server: the record types whose dnspython modules are imported on first
use, an IDN recipient, the rdns check's shipped patterns again after a reload.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from miltertest import constants as C

from tests.support.dnsserver import TestDnsServer
from tests.support.milterclient import MtaClient
from tests.support.mxguard_proc import REPO_ROOT, MilterStartError, MxguardProcess

from .test_lifecycle import wait_for

ZONES = """
$TTL 300
sender.example.          IN SOA  ns.sender.example. h.sender.example. 1 3600 600 86400 60
sender.example.          IN MX   10 mail.sender.example.
sender.example.          IN TXT  "v=spf1 a mx include:_spf.sender.example -all"
_spf.sender.example.     IN TXT  "v=spf1 ip4:203.0.113.5 ip4:203.0.113.7 -all"
_dmarc.sender.example.   IN TXT  "v=DMARC1; p=reject"
mail.sender.example.     IN A    203.0.113.5
mail.sender.example.     IN AAAA 2001:db8::5
adsl-7.isp.example.      IN A    203.0.113.7
113.0.203.in-addr.arpa.  IN SOA  ns.sender.example. h.sender.example. 1 3600 600 86400 60
5.113.0.203.in-addr.arpa. IN PTR mail.sender.example.
7.113.0.203.in-addr.arpa. IN PTR adsl-7.isp.example.
"""


@pytest.fixture(scope="module")
def private_install() -> Iterator[tuple[Path, Path]]:
    """(base, venv): mxguard installed from a copy of this tree into a venv under a directory
    only root may enter; the dependencies are copied from the test venv, offline."""
    if os.geteuid() != 0:
        pytest.fail("these tests need root (make test runs as root in CI)")
    base = Path(tempfile.mkdtemp(prefix="mxguard-private-", dir="/tmp"))
    base.chmod(0o755)
    private = base / "private"
    private.mkdir(mode=0o700)
    venv = private / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths()["purelib"])
    target = venv / "lib" / site.parent.name / "site-packages"
    shutil.copytree(
        site, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__editable__*", "mxguard*")
    )
    source = base / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.rst"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("milter", "man"):
        ignored = shutil.ignore_patterns("*.egg-info", "__pycache__")
        shutil.copytree(REPO_ROOT / name, source / name, ignore=ignored)
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*install, "--no-build-isolation", "--no-index", str(source)], check=True)
    yield base, venv
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def dns() -> Iterator[TestDnsServer]:
    with TestDnsServer(ZONES) as server:
        yield server


def start_private(
    base: Path, venv: Path, dns: TestDnsServer, name: str, extra: dict | None = None
) -> MxguardProcess:
    config = {
        "milter": {
            "socket": f"unix:{base}/{name}/run/mxguard.sock",
            "user": "nobody",
            "hostnames": "mx.example.test",
            "local_domains": "example.test",
        },
        "dns": {"nameservers": dns.address, "timeout": "2s"},
        "state": {"url": f"sqlite:///{base}/{name}/state/state.db"},
    }
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    (base / name).mkdir(mode=0o755)
    process = MxguardProcess(
        config,
        work_dir=base / name / "work",
        command=(str(venv / "bin" / "mxguard"), "run", "-c", "{ini}"),
        env={"PYTHONPATH": ""},  # the installed package, not this tree
        ready_line="listening on ",
    )
    (base / name / "work").chmod(0o755)  # nobody reads the INI again on reload
    return process.start()


def client(process: MxguardProcess) -> MtaClient:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(10)
    connection.connect(process.socket.partition(":")[2])
    mta = MtaClient(connection)
    mta.negotiate()
    mta.macros(C.SMFIC_CONNECT, j="mx.example.test", **{"{daemon_name}": "mx"})
    return mta


def transaction(process: MxguardProcess, ip: str, name: str) -> list[tuple]:
    """One outside client's transaction; the replies of MAIL, both RCPTs and end of message."""
    mta = client(process)
    mta.connect_step(ip, hostname=name)
    mta.helo(name)
    replies = [mta.mail("<someone@sender.example>")]
    replies.append(mta.rcpt("<alice@example.test>"))
    replies.append(mta.rcpt("<bob@bücher.example>"))  # IDN: the punycode codec
    mta.header("From", "Some One <someone@sender.example>")
    replies.append(mta.end_of_message())
    mta.quit()
    return replies


def added(eom: list[tuple], name: str) -> str:
    return next(
        args["value"] for cmd, args in eom if cmd == C.SMFIR_INSHEADER and args["name"] == name
    )


def test_an_install_nobody_cannot_read_still_filters_mail(
    private_install: tuple[Path, Path], dns: TestDnsServer
) -> None:
    base, venv = private_install
    process = start_private(base, venv, dns, "reads")
    try:
        mail, rcpt, idn, eom = transaction(process, "203.0.113.5", "mail.sender.example")
        # Without the preload: 451 4.3.0 at MAIL ('GenericRdata' object has no attribute
        # 'address'), and an unknown punycode codec at the IDN recipient.
        assert mail == (C.SMFIR_CONTINUE, {}), mail
        assert rcpt == (C.SMFIR_CONTINUE, {}), rcpt
        assert idn[1]["smtpcode"] == "550" and "relay" in idn[1]["text"], idn
        results = added(eom, "Authentication-Results")
        assert "spf=pass" in results and "iprev=pass" in results and "dmarc=pass" in results
        log = process.log_text()
        assert "internal error" not in log
        assert f"user nobody cannot read {base}/private (mode 0700, owner root)" in log
        assert "so mail flows, but an upgrade in place needs a restart" in log
    finally:
        process.stop()


def test_after_a_reload_as_nobody_the_shipped_patterns_still_count(
    private_install: tuple[Path, Path], dns: TestDnsServer
) -> None:
    """The rdns check's data/dynamic-patterns.txt is read again by every reload, as nobody."""
    base, venv = private_install
    process = start_private(base, venv, dns, "reload")
    try:
        eom = transaction(process, "203.0.113.7", "adsl-7.isp.example")[-1]
        before = added(eom, "X-MXGuard")
        assert "rdns.dynamic=tag (203.0.113.7 (adsl-7.isp.example) looks like" in before
        since = process.log_size()
        process.signal(signal.SIGUSR1)
        assert wait_for(lambda: "configuration reloaded" in process.log_text(since))
        eom = transaction(process, "203.0.113.7", "adsl-7.isp.example")[-1]
        assert added(eom, "X-MXGuard") == before
        assert "cannot read the shipped patterns" not in process.log_text()
    finally:
        process.stop()


def test_a_data_file_nobody_cannot_read_stops_startup(
    private_install: tuple[Path, Path], dns: TestDnsServer
) -> None:
    """Read as root at start, it would be lost at the first reload: stop now, and say so."""
    base, venv = private_install
    patterns = base / "root-only-patterns.txt"
    patterns.write_text("(?<![a-z])cable(?![a-z])\n")
    patterns.chmod(0o600)
    with pytest.raises(MilterStartError) as started:
        start_private(base, venv, dns, "unreadable", {"rdns": {"patterns_file": str(patterns)}})
    message = str(started.value)
    assert "exited with status 2" in message
    assert f"[rdns] patterns_file: {patterns}: user nobody cannot read it" in message
    assert f"chgrp nogroup {patterns}" in message
    assert "not starting: mail would fail as user nobody" in message
