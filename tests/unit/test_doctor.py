"""doctor's checks on given postconf values and master.cf services (tests/e2e/test_doctor_e2e.py
runs it against real Postfix configurations and a running mxguard)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxguard.core import config
from mxguard.tools import doctor
from mxguard.tools.milterprobe import Address, Answer
from mxguard.tools.postfixview import (
    Service,
    milter_entries,
    parse_services,
    seen_path,
    smtpd_milters_value,
)

RUN_SOCKET = "unix:/run/mxguard/mxguard.sock"
QUEUE = "/var/spool/postfix"
RELATIVE = "unix:mxguard/mxguard.sock"  # the chroot layout's smtpd_milters
IN_QUEUE = f"unix:{QUEUE}/mxguard/mxguard.sock"


def settings(socket_spec: str, user: str = "") -> config.Settings:
    return config.load("t.ini", text=f"[milter]\nsocket = {socket_spec}\nuser = {user}\n")


def answered(_target: Address) -> Answer:
    """A probe that finds mxguard wherever it looks (the probe has tests of its own)."""
    return Answer(version=6)


def listening_socket(path: Path) -> socket.socket:
    """A bound, listening unix socket that the postfix user may use; the caller closes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    bound = socket.socket(socket.AF_UNIX)
    bound.bind(str(path))
    bound.listen()
    os.chmod(path, 0o666)
    return bound


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short name: a unix socket's path has at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="dr-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


def values_for(queue: Path | str, **more: str) -> dict[str, str]:
    """postconf's values for these tests: Postfix 3.7, the queue directory, and ``more``."""
    values = {"queue_directory": str(queue), "mail_owner": "postfix", "mail_version": "3.7.11"}
    return {**values, "milter_default_action": "tempfail", **more}


def milters(spec: str, values: dict[str, str], services: list[Service]) -> list[doctor.Finding]:
    """doctor's findings on the services' milter lists, for mxguard at ``spec``."""
    return doctor.check_milters(settings(spec), values, services)[0]


def debian(milters: str, cleanup: str | None = None, **extra: Service) -> list[Service]:
    """Debian's master.cf as doctor reads it: smtpd and cleanup chrooted."""
    return [
        Service("smtp/inet", "smtpd", True, milters),
        Service("cleanup/unix", "cleanup", True, milters if cleanup is None else cleanup),
        *extra.values(),
    ]


def texts(findings: list[doctor.Finding]) -> str:
    return "\n".join(f"{f.ok} {f.note} {f.text} | {f.fix}" for f in findings)


# -- the smtpd_milters value for mxguard's socket ---------------------------------------------


@pytest.mark.parametrize(
    ("spec", "queue", "value"),
    [
        (IN_QUEUE, QUEUE, RELATIVE),
        (IN_QUEUE, QUEUE + "/", RELATIVE),
        (RUN_SOCKET, QUEUE, RUN_SOCKET),
        ("unix:/var/spool/postfixx/m.sock", QUEUE, "unix:/var/spool/postfixx/m.sock"),
        ("inet:8894@127.0.0.1", QUEUE, "inet:127.0.0.1:8894"),
        ("inet:8894@0.0.0.0", QUEUE, "inet:127.0.0.1:8894"),
        ("inet6:8894@[::1]", QUEUE, "inet:[::1]:8894"),
    ],
)
def test_the_smtpd_milters_value_for_a_socket(spec: str, queue: str, value: str) -> None:
    assert smtpd_milters_value(spec, queue) == value


def test_the_smtpd_milters_value_defaults_to_debians_queue_directory() -> None:
    assert smtpd_milters_value("unix:/var/spool/postfix/mxguard/m.sock") == "unix:mxguard/m.sock"


# -- master.cf as postconf -F and postconf -P -x print it --------------------------------------

POSTCONF_F = """\
smtp/inet/service = smtp
smtp/inet/type = inet
smtp/inet/chroot = y
smtp/inet/command = postscreen
smtpd/pass/chroot = y
smtpd/pass/command = smtpd
submission/inet/chroot = -
submission/inet/command = smtpd -o syslog_name=postfix/submission -o smtpd_milters=
127.0.0.1:10025/inet/chroot = n
127.0.0.1:10025/inet/command = /usr/lib/postfix/sbin/smtpd -o smtpd_milters=$mua_milters
pickup/unix/chroot = y
pickup/unix/command = pickup
cleanup/unix/chroot = y
cleanup/unix/command = cleanup
relay/unix/chroot = y
relay/unix/command = smtp
"""
POSTCONF_P = """\
relay/unix/syslog_name = postfix/relay
submission/inet/syslog_name = postfix/submission
submission/inet/smtpd_milters =
127.0.0.1:10025/inet/smtpd_milters = unix:mxguard/mxguard.sock, inet:127.0.0.1:9000
"""


def test_master_cf_services_with_their_chroot_and_milter_lists() -> None:
    values = {"smtpd_milters": RELATIVE, "non_smtpd_milters": "", "mail_version": "3.7.11"}
    services = {s.name: s for s in parse_services(POSTCONF_F, POSTCONF_P, values)}
    # postscreen is no smtpd; the smtpd behind it is.
    names = ["smtpd/pass", "submission/inet", "127.0.0.1:10025/inet", "cleanup/unix"]
    assert list(services) == names
    assert services["smtpd/pass"] == Service("smtpd/pass", "smtpd", True, RELATIVE)
    # "-" is n since Postfix 3.0; an override applies, even an empty one, expanded by postconf.
    assert services["submission/inet"] == Service("submission/inet", "smtpd", False, "", True)
    assert services["127.0.0.1:10025/inet"].milters.startswith("unix:mxguard/mxguard.sock, ")
    assert services["cleanup/unix"] == Service("cleanup/unix", "cleanup", True, "")
    assert services["cleanup/unix"].parameter == "non_smtpd_milters"


def test_before_postfix_3_a_dash_in_the_chroot_column_meant_chrooted() -> None:
    values = {"mail_version": "2.11.3"}
    services = {service.name: service for service in parse_services(POSTCONF_F, "", values)}
    assert services["submission/inet"].chroot is True


def test_milter_lists_with_option_groups() -> None:
    value = "{ unix:mxguard/mxguard.sock, default_action=accept }, inet:127.0.0.1:9000 local:/x"
    assert milter_entries(value) == ["unix:mxguard/mxguard.sock", "inet:127.0.0.1:9000", "local:/x"]


def test_the_file_a_service_opens_for_a_unix_name() -> None:
    run = "/run/mxguard/mxguard.sock"
    assert seen_path("mxguard/mxguard.sock", QUEUE, chroot=True) == f"{QUEUE}/mxguard/mxguard.sock"
    assert seen_path("mxguard/mxguard.sock", QUEUE, chroot=False) == f"{QUEUE}/mxguard/mxguard.sock"
    assert seen_path(run, QUEUE, chroot=True) == f"{QUEUE}{run}"
    assert seen_path(run, QUEUE, chroot=False) == run


# -- each smtpd and cleanup service, as it sees the socket -------------------------------------


def test_a_chrooted_smtpd_cannot_reach_a_socket_outside_the_queue_directory(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    path = tmp_path / "run" / "mxguard.sock"
    with listening_socket(path):  # mxguard runs, and the postfix user could reach it unchrooted
        values = values_for(queue, smtpd_milters=f"unix:{path}", non_smtpd_milters=f"unix:{path}")
        services = debian(f"unix:{path}")
        found = doctor.diagnose(settings(f"unix:{path}", "mxguard"), values, services, answered)
    [smtpd, cleanup] = [f for f in found if f.text.startswith(("smtp/inet", "cleanup/unix"))]
    assert not smtpd.ok and f"chrooted in {queue}" in smtpd.text
    assert f"opens as {queue}{path}: no such file (every message gets 451 4.7.1)" in smtpd.text
    assert smtpd.fix == (
        f"install -d -o mxguard -g mxguard -m 0750 {queue}/mxguard; "
        f"[milter] socket = unix:{queue}/mxguard/mxguard.sock in t.ini (restart mxguard); "
        "postconf -e 'smtpd_milters = unix:mxguard/mxguard.sock'; postfix reload"
    )
    # non_smtpd_milters = $smtpd_milters: the smtpd_milters fix is the fix.
    assert not cleanup.ok and cleanup.fix.startswith("the smtpd_milters fix")
    assert doctor.report(found) == 1


def test_the_chroot_layout_reaches_the_socket(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    path = queue / "mxguard" / "mxguard.sock"
    with listening_socket(path):
        values = values_for(queue, smtpd_milters=RELATIVE)
        found = doctor.check_wiring(settings(f"unix:{path}"), values, debian(RELATIVE), answered)
    assert all(finding.ok and not finding.note for finding in found), texts(found)
    assert f"{RELATIVE} = {path}" in found[0].text
    assert found[-1].text.startswith(f"mxguard answered a milter negotiation on unix:{path}")


def test_an_absolute_name_inside_the_queue_directory_is_wrong_in_the_chroot(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    path = queue / "mxguard" / "mxguard.sock"
    with listening_socket(path):
        values = values_for(queue, smtpd_milters=f"unix:{path}")
        [smtpd, cleanup] = milters(f"unix:{path}", values, debian(f"unix:{path}", cleanup=""))
    assert not smtpd.ok and f"opens as {queue}{path}" in smtpd.text
    # The INI is right already: only the name changes.
    assert smtpd.fix == "postconf -e 'smtpd_milters = unix:mxguard/mxguard.sock'; postfix reload"
    assert cleanup.note and cleanup.fix == "postconf -e 'non_smtpd_milters = $smtpd_milters'"


def test_a_socket_inside_the_chroot_at_the_absolute_path_is_reached(short_tmp: Path) -> None:
    """An admin may bind-mount /run/mxguard into the chroot: then the name works."""
    queue, path = short_tmp / "q", short_tmp / "run" / "mxguard.sock"
    with listening_socket(path), listening_socket(Path(f"{queue}{path}")):
        services = debian(f"unix:{path}")
        found, targets = doctor.check_milters(settings(f"unix:{path}"), values_for(queue), services)
    assert all(finding.ok for finding in found), texts(found)
    assert targets == [f"{queue}{path}"]


def test_a_submission_service_without_mxguard_is_a_note(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    path = queue / "mxguard" / "mxguard.sock"
    submission = Service("submission/inet", "smtpd", True, "", override=True)
    values = values_for(queue, smtpd_milters=RELATIVE)
    with listening_socket(path):
        found = milters(f"unix:{path}", values, debian(RELATIVE, submission=submission))
    [note] = [finding for finding in found if finding.note]
    assert note.text.startswith("submission/inet (smtpd, chrooted in ")
    assert "smtpd_milters = '' (-o in master.cf) does not name" in note.text
    assert note.fix == "postconf -PX 'submission/inet/smtpd_milters'"


def test_no_smtpd_service_with_mxguard_is_a_problem(tmp_path: Path) -> None:
    other = "inet:127.0.0.1:9000"
    services = [
        Service("smtp/inet", "smtpd", False, other),
        Service("submission/inet", "smtpd", False, "", override=True),
    ]
    values = values_for(tmp_path, smtpd_milters=other)
    found, targets = doctor.check_milters(settings("inet:8894@127.0.0.1"), values, services)
    assert not found[0].ok and targets == []
    assert found[0].text.startswith("smtpd_milters = 'inet:127.0.0.1:9000' does not name")
    assert "(nor does -o smtpd_milters of submission/inet in master.cf)" in found[0].text
    # Added to the list: the other milter is the admin's to keep or drop.
    assert found[0].fix == "postconf -e 'smtpd_milters = inet:127.0.0.1:9000, inet:127.0.0.1:8894'"


def test_outside_the_chroot_the_fix_says_where_to_put_the_socket(tmp_path: Path) -> None:
    values = values_for(QUEUE, smtpd_milters="", non_smtpd_milters="")
    [smtpd, non_smtpd] = milters(RUN_SOCKET, values, debian(""))
    assert not smtpd.ok and "a chrooted smtpd cannot reach" in smtpd.text
    assert "[milter] socket = unix:/var/spool/postfix/mxguard/mxguard.sock" in smtpd.fix
    assert "smtpd_milters = unix:mxguard/mxguard.sock" in smtpd.fix
    assert non_smtpd.ok and non_smtpd.note


def test_an_unchrooted_smtpd_reaches_the_run_socket(tmp_path: Path) -> None:
    path = tmp_path / "run" / "mxguard.sock"
    services = [Service("smtp/inet", "smtpd", False, f"unix:{path}")]
    with listening_socket(path):
        found = doctor.check_wiring(settings(f"unix:{path}"), values_for(QUEUE), services, answered)
    assert [f.ok for f in found] == [True, True, True, True], texts(found)
    assert found[2].text == f"postfix can reach {path}"


def test_inet_entries_match_the_libmilter_address() -> None:
    def first(entry: str) -> doctor.Finding:
        return milters(
            "inet:8894@127.0.0.1", values_for(QUEUE), [Service("s", "smtpd", True, entry)]
        )[0]

    for entry in ("inet:127.0.0.1:8894", "inet:localhost:8894"):
        assert first(entry).ok and "names mxguard's socket" in first(entry).text, entry
    assert not first("inet:127.0.0.1:8895").ok


# -- the socket as Postfix's user meets it ------------------------------------------------------


def test_socket_the_postfix_user_cannot_write(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    path = tmp_path / "mxguard.sock"
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(path))
        values = {"mail_owner": "postfix"}
        os.chmod(path, 0o600)  # root's only
        [finding] = doctor.check_socket(str(path), values)
        assert not finding.ok and "postfix cannot write to" in finding.text
        assert finding.fix.startswith("adduser postfix ")
        os.chmod(path, 0o666)
        [finding] = doctor.check_socket(str(path), values)
        assert finding.ok


def test_a_file_that_is_not_a_socket_is_not_probed(tmp_path: Path) -> None:
    path = tmp_path / "mxguard.sock"
    path.write_text("")
    found = doctor.check_target(str(path), {"mail_owner": "postfix"}, answered)
    assert [finding.text for finding in found] == [f"{path} is not a socket"]


def test_what_did_not_answer_is_a_problem() -> None:
    def refused(_target: Address) -> Answer:
        return Answer(reason="connection refused (nothing listens on it)", nobody=True)

    finding = doctor.check_answer(("127.0.0.1", 8894), refused)
    assert not finding.ok
    assert finding.text == (
        "no milter negotiation on inet:127.0.0.1:8894: connection refused (nothing listens on it)"
    )
    assert finding.fix.startswith("systemctl start mxguard")


# -- postconf ----------------------------------------------------------------------------------


def test_postconf_is_asked_for_expanded_values(tmp_path: Path) -> None:
    """non_smtpd_milters = $smtpd_milters (the README's line) is compared expanded (-x)."""
    fake = tmp_path / "postconf"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "names = [a for a in sys.argv[1:] if not a.startswith('-')]\n"
        f"raw = {{'smtpd_milters': '{RELATIVE}', 'non_smtpd_milters': '$smtpd_milters'}}\n"
        "for name in names:\n"
        "    value = raw.get(name, '')\n"
        "    print(raw['smtpd_milters'] if '-x' in sys.argv and value.startswith('$') else value)\n"
    )
    fake.chmod(0o755)
    values = doctor.postconf(None, str(fake))
    assert values["non_smtpd_milters"] == RELATIVE
    services = debian(values["smtpd_milters"], cleanup=values["non_smtpd_milters"])
    found = milters(IN_QUEUE, values_for(QUEUE, **values), services)
    assert not any("does not name" in finding.text for finding in found), texts(found)


def test_postconf_that_fails_names_the_reason(tmp_path: Path) -> None:
    with pytest.raises(doctor.PostconfError, match="No such file"):
        doctor.postconf(str(tmp_path / "nonexistent"), str(tmp_path / "postconf"))
