"""The recipients check: the recipients file, its reload, and the 550 5.1.1 reply."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

import pytest

from mxguard.checks import recipients
from mxguard.core import config
from mxguard.core.check import Services
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Envelope, Facts, Recipient, Stage
from mxguard.core.notices import Notices
from mxguard.core.verdict import Action, Replies
from mxguard.mail.address import parse_path

from .fakes import FakeClock, FakeDns, run_check

SITE = "[milter]\nlocal_domains = example.org, example.net\nhostnames = mx.example.org\n"
OUTSIDER = Connection(client_ip=ipaddress.ip_address("203.0.113.9"))
TRUSTED = Connection(client_ip=ipaddress.ip_address("127.0.0.1"), trusted=True)

LIST = """\
# valid recipients
alice@example.org
Bob@Example.ORG
   @example.net
"""


def make_services(clock: FakeClock, ini: str = SITE) -> Services:
    site = config.load("t.ini", text=ini).milter
    return Services(site=site, dns=FakeDns(), clock=clock, notices=Notices(clock))


def prepared(path: Path, ini: str = SITE):
    settings = config.load("t.ini", text=f"{ini}[recipients]\nfile = {path}\n").checks[NAME]
    return recipients.prepare(settings)


NAME = recipients.NAME


def decide(raw: str, prep, services: Services, connection: Connection = OUTSIDER, **kw):
    facts = Facts(
        Stage.RCPT,
        connection,
        Envelope("<x@sender.example>", parse_path("<x@sender.example>")),
        Recipient(raw, parse_path(raw), **kw),
    )
    return run_check(recipients.CHECK, facts, prep, services)[0]


@pytest.fixture
def listfile(tmp_path: Path) -> Path:
    path = tmp_path / "recipients"
    path.write_text(LIST)
    return path


def test_parse_reads_mailboxes_catch_alls_and_comments() -> None:
    table, problems = recipients.parse(LIST, "r.txt")
    assert problems == []
    assert table.mailboxes == {("alice", "example.org"), ("bob", "example.org")}
    assert table.catch_all == {"example.net"}


def test_parse_reports_broken_lines_and_keeps_the_rest() -> None:
    text = (
        "alice@example.org\nno-at-sign\ntwo words@example.org\n@bad..domain\n@\nbob@example.org\n"
    )
    table, problems = recipients.parse(text, "r.txt")
    assert table.mailboxes == {("alice", "example.org"), ("bob", "example.org")}
    assert [p.split(":", 2)[:2] for p in problems] == [
        ["r.txt", "2"],
        ["r.txt", "3"],
        ["r.txt", "4"],
        ["r.txt", "5"],
    ]


def test_broken_lines_are_logged_with_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "r"
    path.write_text("alice@example.org\nnonsense\n")
    with caplog.at_level(logging.WARNING, "mxguard.recipients"):
        prep = prepared(path)
    assert f"{path}:2:" in caplog.text
    assert decide("<alice@example.org>", prep, make_services(FakeClock())) is None


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("<alice@example.org>", id="listed"),
        pytest.param("<ALICE@Example.Org>", id="case-insensitive"),
        pytest.param("<bob@example.org>", id="listed-in-other-case"),
        pytest.param("<anyone@example.net>", id="catch-all"),
        pytest.param("<someone@elsewhere.example>", id="not-local"),
        pytest.param("<someone@mx.example.org>", id="hostname-is-not-a-local-domain"),
        pytest.param("<postmaster>", id="bare-postmaster"),
        pytest.param("<PostMaster@example.org>", id="postmaster-at-local-domain"),
        pytest.param("<x@[192.0.2.1]>", id="address-literal"),
    ],
)
def test_passes(raw: str, listfile: Path) -> None:
    assert decide(raw, prepared(listfile), make_services(FakeClock())) is None


def test_unknown_local_recipient_gets_550_511_and_says_nothing_more(listfile: Path) -> None:
    verdict = decide("<carol@Example.org>", prepared(listfile), make_services(FakeClock()))
    assert verdict is not None
    assert verdict.action is Action.REJECT
    assert verdict.reply == Replies.UNKNOWN_USER
    assert verdict.outcome == "recipients.unknown"
    assert verdict.text == "recipients: <carol@example.org>: no such user here"


def test_applies_to_trusted_clients_too(listfile: Path) -> None:
    verdict = decide("<carol@example.org>", prepared(listfile), make_services(FakeClock()), TRUSTED)
    assert verdict is not None and verdict.reply == Replies.UNKNOWN_USER
    assert recipients.CHECK.exempt == frozenset()


def test_mta_rejected_recipient_is_left_to_the_mta(listfile: Path) -> None:
    prep = prepared(listfile)
    assert (
        decide("<carol@example.org>", prep, make_services(FakeClock()), mta_rejected=True) is None
    )


def test_without_a_file_the_check_decides_nothing() -> None:
    settings = config.load("t.ini", text=SITE).checks[NAME]
    assert settings.enabled and settings.file == ""
    assert recipients.CHECK.active_stages(settings) == frozenset()
    prep = recipients.prepare(settings)
    assert decide("<carol@example.org>", prep, make_services(FakeClock())) is None


def test_file_is_reloaded_when_it_changes(listfile: Path) -> None:
    clock = FakeClock()
    services = make_services(clock)
    prep = prepared(listfile)
    assert decide("<carol@example.org>", prep, services) is not None
    listfile.write_text("carol@example.org\n")
    os.utime(listfile, ns=(10**18, 10**18))  # a surely different mtime
    clock.now += recipients.CHECK_EVERY / 2
    assert decide("<carol@example.org>", prep, services) is not None, "not looked at yet"
    clock.now += recipients.CHECK_EVERY
    assert decide("<carol@example.org>", prep, services) is None
    assert decide("<alice@example.org>", prep, services) is not None


def test_unreadable_file_at_reload_keeps_the_old_table(
    listfile: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    services = make_services(clock)
    prep = prepared(listfile)
    listfile.unlink()
    clock.now += recipients.CHECK_EVERY * 2
    with caplog.at_level(logging.WARNING):
        assert decide("<carol@example.org>", prep, services) is not None
        assert decide("<alice@example.org>", prep, services) is None
    assert "cannot read" in caplog.text


@pytest.mark.parametrize("content", [None, "# nothing yet\n"], ids=["missing", "empty"])
def test_missing_or_empty_file_refuses_nothing(
    tmp_path: Path, content: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "r"
    if content is not None:
        path.write_text(content)
    with caplog.at_level(logging.WARNING, "mxguard.recipients"):
        prep = prepared(path)
    assert str(path) in caplog.text
    assert decide("<carol@example.org>", prep, make_services(FakeClock())) is None


def test_config_error_names_file_section_and_option() -> None:
    with pytest.raises(ConfigError) as raised:
        config.load("site.ini", text=f"{SITE}[recipients]\nenabled = perhaps\n")
    message = str(raised.value)
    assert "site.ini" in message and "[recipients]" in message and "enabled" in message


def test_a_batv_tagged_recipient_is_judged_by_its_mailbox(listfile: Path) -> None:
    from mxguard.mail import batv

    services = make_services(FakeClock())
    known = batv.make_tag("alice@example.org", ("s3cret",), 20000, 7)
    unknown = batv.make_tag("nobody@example.org", ("s3cret",), 20000, 7)
    assert known.startswith("prvs=")
    assert decide(f"<{known}>", prepared(listfile), services) is None
    assert decide(f"<{unknown}>", prepared(listfile), services).outcome == "recipients.unknown"
