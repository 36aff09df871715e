"""``mxguard doctor`` against real Postfix configurations: the private Postfix of these tests
(unchrooted, TCP), good and broken, and Debian's own master.cf (smtpd and cleanup chrooted),
read by the real ``postconf -c DIR``, with mxguard running on a unix socket outside and inside
the queue directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxguard.tools import doctor
from mxguard.tools.milterprobe import Answer, negotiate
from mxguard.tools.postfixview import master_services
from tests.support.dnsserver import TestDnsServer
from tests.support.mxguard_proc import MxguardProcess
from tests.support.postfix import PostfixInstance

from .conftest import mxguard_config, running_mxguard

pytestmark = pytest.mark.usefixtures("requires_mxguard")

DEBIAN_MASTER_CF = Path("/usr/share/postfix/master.cf.dist")
CHROOT_NAME = "unix:mxguard/mxguard.sock"  # smtpd_milters of the chroot layout


def doctor_run(ini: Path, postfix_config: Path) -> subprocess.CompletedProcess[str]:
    mxguard_cli = str(Path(sys.executable).with_name("mxguard"))
    return subprocess.run(
        [mxguard_cli, "doctor", "-c", str(ini), "--postfix-config", str(postfix_config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_passes_the_running_test_instance(
    mta: PostfixInstance, mxguard: MxguardProcess
) -> None:
    result = doctor_run(mxguard.ini_path, mta.conf_dir)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # Both listeners (port 25 and the submission port), each unchrooted.
    assert (
        out.count(f"(smtpd): smtpd_milters names mxguard's socket, {mxguard.postfix_socket}") == 2
    )
    assert f"ok       mxguard answered a milter negotiation on {mxguard.postfix_socket}" in out
    assert "ok       milter_protocol = 6" in out
    assert "ok       milter_default_action = tempfail" in out
    assert "ok       worst-case DNS time per stage" in out


def test_doctor_finds_a_broken_configuration(e2e_dir: Path, mxguard: MxguardProcess) -> None:
    broken = PostfixInstance(
        base_dir=e2e_dir / "broken-postfix",
        milter="inet:127.0.0.1:1",  # not mxguard
        main_cf={
            "milter_protocol": "2",
            "milter_default_action": "accept",
            "milter_mail_macros": "i {mail_addr}",
            "milter_command_timeout": "2s",
        },
    )
    broken._write_config()  # the files are what postconf reads; nothing needs to run
    result = doctor_run(mxguard.ini_path, broken.conf_dir)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "PROBLEM  smtpd_milters = 'inet:127.0.0.1:1' does not name" in out
    assert "PROBLEM  milter_protocol = 2" in out
    assert "PROBLEM  milter_default_action = accept" in out and "accepted unfiltered" in out
    assert "PROBLEM  milter_mail_macros lacks {auth_authen}" in out
    assert "PROBLEM  worst case at mail is" in out and "milter_command_timeout = 2s" in out
    assert out.count("fix: postconf -e") >= 5


# -- Debian's master.cf ---------------------------------------------------------------------------


def debian_postfix(base: Path, smtpd_milters: str, master: str = "", main: str = "") -> Path:
    """A config directory with Debian's stock master.cf (plus ``master`` lines) and a main.cf
    with the README's milter lines (plus ``main``), queue_directory ``base/queue``."""
    if not DEBIAN_MASTER_CF.exists():
        pytest.skip(f"{DEBIAN_MASTER_CF} not found (Debian's postfix package)")
    conf, queue = base / "conf", base / "queue"
    for directory in (base, conf, queue):
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)
    (conf / "master.cf").write_text(DEBIAN_MASTER_CF.read_text() + master)
    (conf / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {queue}\n"
        f"smtpd_milters = {smtpd_milters}\n"
        "non_smtpd_milters = $smtpd_milters\n"
        "milter_default_action = tempfail\n"
        "milter_protocol = 6\n" + main
    )
    return conf


@pytest.fixture(scope="module")
def run_socket(e2e_dir: Path, dns_server: TestDnsServer) -> Iterator[MxguardProcess]:
    """mxguard on a socket outside the queue directory, as with the README's /run socket."""
    base = e2e_dir / "doctor-run"
    with running_mxguard(
        "mxguard (doctor, /run)",
        mxguard_config(f"unix:{base}/run/mxguard.sock", dns_server, base / "mxguard"),
        base / "mxguard",
    ) as process:
        _open_to_postfix(Path(f"{base}/run/mxguard.sock"))
        yield process


@pytest.fixture(scope="module")
def chroot_socket(e2e_dir: Path, dns_server: TestDnsServer) -> Iterator[MxguardProcess]:
    """mxguard in the chroot layout: its socket in the queue directory's mxguard/."""
    base = e2e_dir / "doctor-chroot"
    (base / "queue").mkdir(parents=True)
    path = base / "queue" / "mxguard" / "mxguard.sock"
    with running_mxguard(
        "mxguard (doctor, chroot)",
        mxguard_config(f"unix:{path}", dns_server, base / "mxguard"),
        base / "mxguard",
    ) as process:
        _open_to_postfix(path)
        yield process


def _open_to_postfix(path: Path) -> None:
    """mxguard runs as root here ([milter] user is empty): open its socket to the postfix user,
    as membership in group mxguard does on a real system."""
    path.parent.chmod(0o755)
    path.chmod(0o666)


def socket_of(process: MxguardProcess) -> Path:
    return Path(process.socket.removeprefix("unix:"))


def test_debian_master_cf_as_postconf_reads_it(e2e_dir: Path) -> None:
    """Chroot columns, per-service overrides (expanded), and main.cf's lists expanded too."""
    extra = (
        "submission inet n - - - - smtpd\n  -o syslog_name=postfix/submission\n"
        "  -o smtpd_milters=\n"
        "127.0.0.1:10025 inet n - n - - smtpd -o smtpd_milters=$mua_milters\n"
    )
    conf = debian_postfix(e2e_dir / "doctor-read", CHROOT_NAME, extra, "mua_milters = $m\nm = x\n")
    values = doctor.postconf(str(conf))
    assert values["config_directory"] == str(conf)
    assert values["non_smtpd_milters"] == CHROOT_NAME  # $smtpd_milters, expanded
    services = {service.name: service for service in master_services(str(conf), values)}
    assert sorted(services) == [
        "127.0.0.1:10025/inet",
        "cleanup/unix",
        "smtp/inet",
        "submission/inet",
    ]
    assert services["smtp/inet"].chroot and services["cleanup/unix"].chroot
    assert services["smtp/inet"].milters == services["cleanup/unix"].milters == CHROOT_NAME
    assert not services["submission/inet"].chroot  # "-": n on Postfix 3
    assert services["submission/inet"].override and services["submission/inet"].milters == ""
    assert services["127.0.0.1:10025/inet"].milters == "x"


def test_a_chrooted_smtpd_cannot_reach_a_socket_outside_the_queue_directory(
    e2e_dir: Path, run_socket: MxguardProcess
) -> None:
    """The README's old first snippet on Debian: every message got 451 4.7.1, doctor said ok."""
    path = socket_of(run_socket)
    conf = debian_postfix(e2e_dir / "doctor-run", f"unix:{path}")
    queue = conf.parent / "queue"
    result = doctor_run(run_socket.ini_path, conf)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert (
        f"PROBLEM  smtp/inet (smtpd, chrooted in {queue}): smtpd_milters names unix:{path}, "
        f"which it opens as {queue}{path}: no such file (every message gets 451 4.7.1)"
    ) in out
    assert (
        f"fix: [milter] socket = unix:{queue}/mxguard/mxguard.sock in {run_socket.ini_path} "
        f"(restart mxguard); postconf -e 'smtpd_milters = {CHROOT_NAME}'; postfix reload"
    ) in out
    assert f"PROBLEM  cleanup/unix (cleanup, chrooted in {queue}): non_smtpd_milters names" in out
    assert (
        f"ok       mxguard answered a milter negotiation on unix:{path} (protocol version 6); "
        "no Postfix service opens it"
    ) in out


def test_the_chroot_layout_with_mxguard_running_is_all_ok(
    e2e_dir: Path, chroot_socket: MxguardProcess
) -> None:
    path = socket_of(chroot_socket)
    conf = debian_postfix(e2e_dir / "doctor-chroot", CHROOT_NAME)
    queue = conf.parent / "queue"
    result = doctor_run(chroot_socket.ini_path, conf)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert (
        f"ok       smtp/inet (smtpd, chrooted in {queue}): smtpd_milters names mxguard's "
        f"socket, {CHROOT_NAME} = {path}"
    ) in out
    assert f"ok       cleanup/unix (cleanup, chrooted in {queue}): non_smtpd_milters names" in out
    assert f"ok       postfix can reach {path}" in out
    assert f"ok       mxguard answered a milter negotiation on unix:{path}" in out
    # non_smtpd_milters = $smtpd_milters is compared expanded: no note, no fix.
    assert "does not name" not in out and "note" not in out, out


def test_a_service_without_mxguard_is_a_note_and_overrides_are_expanded(
    e2e_dir: Path, chroot_socket: MxguardProcess
) -> None:
    extra = (
        "submission inet n - y - - smtpd\n  -o syslog_name=postfix/submission\n"
        "  -o smtpd_milters=\n"
        "127.0.0.1:10025 inet n - n - - smtpd -o smtpd_milters=$mua_milters\n"
    )
    main = f"mua_milters = {CHROOT_NAME}\n"
    conf = debian_postfix(e2e_dir / "doctor-chroot", CHROOT_NAME, extra, main)
    queue = conf.parent / "queue"
    result = doctor_run(chroot_socket.ini_path, conf)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert (
        f"note     submission/inet (smtpd, chrooted in {queue}): smtpd_milters = '' "
        "(-o in master.cf) does not name"
    ) in out
    assert "fix: postconf -PX 'submission/inet/smtpd_milters'" in out
    assert (
        "ok       127.0.0.1:10025/inet (smtpd): smtpd_milters names mxguard's socket, "
        f"{CHROOT_NAME} = {socket_of(chroot_socket)}"
    ) in out


def test_the_probe_against_mxguard_and_a_killed_one(
    e2e_dir: Path, dns_server: TestDnsServer
) -> None:
    base = e2e_dir / "doctor-killed"
    path = base / "queue" / "mxguard" / "mxguard.sock"
    (base / "queue").mkdir(parents=True)
    conf = debian_postfix(base, CHROOT_NAME)
    with running_mxguard(
        "mxguard (doctor, killed)",
        mxguard_config(f"unix:{path}", dns_server, base / "mxguard"),
        base / "mxguard",
    ) as process:
        _open_to_postfix(path)
        assert negotiate(str(path)) == Answer(version=6)
        process.kill()  # no clean-up: the socket file stays, with nothing behind it
        assert negotiate(str(path)).reason == "connection refused (nothing listens on it)"
        result = doctor_run(process.ini_path, conf)
    assert result.returncode == 1
    assert (
        f"PROBLEM  no milter negotiation on unix:{path}: connection refused (nothing listens on "
        "it)\n         fix: systemctl start mxguard"
    ) in result.stdout


def test_the_probe_tells_an_smtp_server_from_a_milter(mta: PostfixInstance) -> None:
    answer = negotiate(mta.address)
    # Postfix 3.7 greets first (220); 3.10 answers our unasked-for bytes with 554 at once.
    replies = ("not a milter: it answered b'220 ", "not a milter: it answered b'554 ")
    assert not answer.ok and answer.reason.startswith(replies), answer
