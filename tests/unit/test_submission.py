"""The submission check: AUTH required, senders bound to logins, per-login rate limits."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import pytest

from mxguard.checks import submission
from mxguard.core import config
from mxguard.core.check import Services
from mxguard.core.dns import Found
from mxguard.core.facts import Connection, Envelope, Facts, Message, Recipient, Stage
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline
from mxguard.core.store import SqliteStore
from mxguard.core.verdict import Action
from mxguard.mail.address import parse_path

from .fakes import FakeClock, FakeDns

SITE = "[milter]\nlocal_domains = example.org, example.net\nhostnames = mx.example.org\n"
CLIENT = ipaddress.ip_address("198.51.100.7")


def settings_for(ini: str = "", path: Path | None = None) -> submission.Prepared:
    text = SITE + "[submission]\n" + ini
    if path is not None:
        text += f"sender_map = {path}\n"
    return submission.prepare(config.load("t.ini", text=text).checks[submission.NAME])


def services(tmp_path: Path, clock: FakeClock | None = None) -> Services:
    clock = clock or FakeClock()
    site = config.load("t.ini", text=SITE).milter
    store = SqliteStore(str(tmp_path / "state.db"), clock)
    return Services(site=site, dns=FakeDns(), clock=clock, notices=Notices(clock), store=store)


def connection(login: str = "", daemon: str = "submission") -> Connection:
    return Connection(
        client_ip=CLIENT, auth_user=login, daemon_name=daemon, submission=daemon == "submission"
    )


def mail(conn: Connection, sender: str) -> Facts:
    return Facts(
        Stage.MAIL, conn, Envelope(f"<{sender}>", parse_path(f"<{sender}>", allow_null=True))
    )


def test_unauthenticated_submission_gets_530(tmp_path: Path) -> None:
    verdict = submission.check_mail(
        mail(connection(), "carol@example.org"), settings_for(), services(tmp_path)
    )
    assert verdict is not None and verdict.action is Action.REJECT
    assert (verdict.reply.smtp_code, verdict.reply.dsn_code) == ("530", "5.7.0")
    assert verdict.text == "Authentication required"
    # Not on the MX listener: inbound mail does not log in.
    inbound = mail(connection(daemon="smtpd"), "someone@elsewhere.example")
    assert submission.check_mail(inbound, settings_for(), services(tmp_path)) is None


@pytest.mark.parametrize(
    ("login", "sender", "allowed"),
    [
        ("carol", "carol@example.org", True),
        ("carol", "Carol@EXAMPLE.NET", True),
        ("carol", "dave@example.org", False),
        ("carol", "carol@elsewhere.example", False),
        ("carol@example.org", "carol@example.org", True),  # Cyrus user@realm
        ("carol@example.org", "carol@example.net", False),
        ("carol", "", True),  # the null sender: vacation replies, notices
    ],
)
def test_envelope_sender_bound_to_login(
    tmp_path: Path, login: str, sender: str, allowed: bool
) -> None:
    facts = mail(connection(login), sender)
    verdict = submission.check_mail(facts, settings_for(), services(tmp_path))
    if allowed:
        assert verdict is None
    else:
        assert verdict is not None and verdict.action is Action.REJECT
        assert verdict.text == f"submission: {login} may not send as {sender}"
        assert (verdict.reply.smtp_code, verdict.reply.dsn_code) == ("550", "5.7.1")


def test_sender_map_adds_addresses_domains_and_admins(tmp_path: Path) -> None:
    path = tmp_path / "senders"
    path.write_text(
        "# shared mailboxes\ncarol: sales@example.org, @lists.example.org\n"
        "admin: *\nbroken line\ndave: not-an-address\n"
    )
    prepared = settings_for(path=path)
    site = services(tmp_path).site.local_domains
    assert submission.may_send_as("carol", "sales@example.org", prepared.senders, site)
    assert submission.may_send_as("carol", "news@lists.example.org", prepared.senders, site)
    assert not submission.may_send_as("carol", "news@example.com", prepared.senders, site)
    assert submission.may_send_as("ADMIN", "anyone@anywhere.example", prepared.senders, site)
    assert not submission.may_send_as("dave", "not-an-address", prepared.senders, site)


def test_header_from_bound_at_end_of_message(tmp_path: Path) -> None:
    def eom(value: str) -> Facts:
        facts = mail(connection("carol"), "carol@example.org")
        return Facts(
            Stage.EOM, facts.connection, facts.envelope,
            message=Message.from_text([("From", value)]),
        )  # fmt: skip

    prepared, svc = settings_for(), services(tmp_path)
    assert submission.check_eom(eom("Carol <carol@example.org>"), prepared, svc) is None
    refused = submission.check_eom(eom("The Boss <boss@example.org>"), prepared, svc)
    assert (
        refused is not None and refused.text == "submission: carol may not send as boss@example.org"
    )
    several = submission.check_eom(eom("carol@example.org, boss@example.org"), prepared, svc)
    assert several is not None and several.action is Action.REJECT


def test_rate_limits_defer_and_warn_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    prepared = settings_for("max_messages_per_hour = 5\nmax_recipients_per_hour = 3\n")
    clock = FakeClock()
    svc = services(tmp_path, clock)
    conn = connection("carol")
    facts = mail(conn, "carol@example.org")
    rcpt = Facts(
        Stage.RCPT, conn, facts.envelope,
        Recipient("<a@elsewhere.example>", parse_path("<a@elsewhere.example>")),
    )  # fmt: skip
    caplog.set_level(logging.WARNING, "mxguard.submission")
    assert [submission.check_rcpt(rcpt, prepared, svc) for _ in range(3)] == [None] * 3
    over = submission.check_rcpt(rcpt, prepared, svc)
    assert over is not None and over.action is Action.TEMPFAIL
    assert (over.reply.smtp_code, over.reply.dsn_code) == ("451", "4.7.1")
    assert over.text == "submission: carol: more than 3 recipients an hour, try again later"
    warnings = [r.getMessage() for r in caplog.records if "recipients=" in r.getMessage()]
    assert len(warnings) == 1 and "80% reached" in warnings[0]  # at 3 of 3, once
    for _ in range(5):
        assert submission.check_mail(facts, prepared, svc) is None
    assert submission.check_mail(facts, prepared, svc).action is Action.TEMPFAIL
    clock.now += submission.HOUR + 1  # a new hour
    assert submission.check_mail(facts, prepared, svc) is None
    assert submission.check_rcpt(rcpt, prepared, svc) is None


def test_inbound_checks_do_not_run_for_authenticated_submission(tmp_path: Path) -> None:
    # Every default check, with a DNSBL that lists the client and a DNS that knows nothing:
    # an outside client is refused, the same client logged in is not.
    ini = SITE + "[dnsbl]\nzones = zen.test=3\nthreshold = 3\n"
    settings = config.load("t.ini", text=ini)
    pipeline = Pipeline(settings.ordered_checks())
    listed = Found(("127.0.0.2",), 300)
    dns = FakeDns(answers={("7.100.51.198.zen.test", "A"): listed})
    svc = Services(
        settings.milter, dns, FakeClock(), Notices(FakeClock()), SqliteStore(str(tmp_path / "s.db"))
    )
    outside = pipeline.run(Stage.CONNECT, Facts(Stage.CONNECT, connection(daemon="smtpd")), svc)
    outside_mail = pipeline.run(
        Stage.MAIL, mail(connection(daemon="smtpd"), "x@elsewhere.example"), svc
    )
    assert any(r.decision is not None for r in (outside, outside_mail))
    own = pipeline.run(Stage.MAIL, mail(connection("carol"), "carol@example.org"), svc)
    assert own.decision is None
    assert not [v for v in own.verdicts if v.check in ("dnsbl", "rdns", "spf", "sender", "helo")]
