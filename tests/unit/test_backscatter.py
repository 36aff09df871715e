"""The backscatter check through the pipeline: BATV tagging, untagging and bounce refusals."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from mxguard.checks import access, backscatter
from mxguard.core import config
from mxguard.core.facts import Connection, Envelope, Facts, Recipient, Stage
from mxguard.core.findings import NONE, Findings
from mxguard.core.pipeline import Pipeline, StageResult
from mxguard.core.verdict import Action, ChangeSender, ReplaceRecipient
from mxguard.mail import batv
from mxguard.mail.address import parse_path

from .fakes import decide, services

NOW = 1_728_000_000.0  # 2024-10-04
TODAY = batv.day_number(NOW)
SITE = "[milter]\nlocal_domains = example.org\nhostnames = mx.example.org\n"
BATV = "[backscatter]\nbatv_secret = new-secret, old-secret\n"
REQUIRED = BATV + "batv_required = yes\n"

OUTSIDER = Connection(client_ip=ipaddress.ip_address("203.0.113.9"))
AUTHENTICATED = Connection(client_ip=ipaddress.ip_address("198.51.100.7"), auth_user="alice")
TRUSTED = Connection(client_ip=ipaddress.ip_address("10.0.0.1"), trusted=True)


def pipeline(ini: str) -> Pipeline:
    settings = config.load("t.ini", text=SITE + ini)
    return Pipeline([(backscatter.CHECK, settings.checks["backscatter"])])


def run_mail(
    sender: str, connection: Connection = AUTHENTICATED, ini: str = BATV, now: float = NOW
) -> StageResult:
    envelope = Envelope(sender, parse_path(sender, allow_null=True, allow_bare_postmaster=False))
    facts = Facts(Stage.MAIL, connection, envelope)
    return pipeline(ini).run(Stage.MAIL, facts, services(SITE, now=now))


def run_rcpt(
    recipient: str,
    sender: str = "<>",
    connection: Connection = OUTSIDER,
    ini: str = BATV,
    now: float = NOW,
    accepted: tuple[str, ...] = (),
    findings: Findings = NONE,
) -> StageResult:
    envelope = Envelope(
        sender,
        parse_path(sender, allow_null=True, allow_bare_postmaster=False),
        recipients=tuple(Recipient(raw, parse_path(raw)) for raw in accepted),
    )
    facts = Facts(
        Stage.RCPT,
        connection,
        envelope,
        Recipient(recipient, parse_path(recipient)),
        findings=findings,
    )
    return pipeline(ini).run(Stage.RCPT, facts, services(SITE, now=now))


def tag_of(result: StageResult) -> str:
    (verdict,) = result.verdicts
    (edit,) = verdict.envelope
    assert isinstance(edit, ChangeSender)
    return edit.address


def refusal(result: StageResult) -> str:
    decision = result.decision
    assert decision is not None and decision.action is Action.REJECT
    assert (decision.reply.smtp_code, decision.reply.dsn_code) == ("550", "5.7.1")
    assert decision.text.startswith("backscatter: ")
    return decision.outcome


# -- outbound tagging -----------------------------------------------------------------------


@pytest.mark.parametrize("connection", [AUTHENTICATED, TRUSTED], ids=["authenticated", "trusted"])
def test_our_users_senders_are_tagged(connection: Connection) -> None:
    result = run_mail("<alice@example.org>", connection)
    assert result.decision is None
    (verdict,) = result.verdicts
    assert verdict.action is Action.CONTINUE
    assert verdict.outcome == "backscatter.tagged"
    tagged = tag_of(result)
    assert tagged == batv.make_tag("alice@example.org", ("new-secret",), TODAY, 7)
    assert not tagged.startswith("<")


@pytest.mark.parametrize(
    ("sender", "connection", "ini"),
    [
        pytest.param("<alice@example.org>", OUTSIDER, BATV, id="outsider"),
        pytest.param("<>", AUTHENTICATED, BATV, id="null-sender"),
        pytest.param("<alice@elsewhere.example>", AUTHENTICATED, BATV, id="foreign-domain"),
        pytest.param("<alice@example.org>", AUTHENTICATED, "", id="no-secret"),
        pytest.param('<"a b"@example.org>', AUTHENTICATED, BATV, id="quoted"),
        pytest.param("<" + "a" * 60 + "@example.org>", AUTHENTICATED, BATV, id="too-long"),
    ],
)
def test_not_tagged(sender: str, connection: Connection, ini: str) -> None:
    assert run_mail(sender, connection, ini).verdicts == ()


def test_already_tagged_sender_is_left_alone() -> None:
    tagged = tag_of(run_mail("<alice@example.org>"))
    assert run_mail(f"<{tagged}>").verdicts == ()


# -- inbound bounces --------------------------------------------------------------------------


def test_round_trip_tag_at_mail_then_bounce_to_it_is_untagged() -> None:
    tagged = tag_of(run_mail("<Alice@example.org>"))
    raw = f"<{tagged}>"
    result = run_rcpt(raw, now=NOW + 3 * 86400)
    assert result.decision is None
    (verdict,) = result.verdicts
    assert verdict.action is Action.CONTINUE and verdict.outcome == "backscatter.valid-tag"
    assert verdict.envelope == (ReplaceRecipient(old=raw, new="Alice@example.org"),)


def test_tag_made_with_an_older_secret_is_accepted() -> None:
    tagged = batv.make_tag("bob@example.org", ("old-secret",), TODAY)
    result = run_rcpt(f"<{tagged}>", ini=REQUIRED)
    assert result.decision is None
    assert result.verdicts[0].envelope[0].new == "bob@example.org"


@pytest.mark.parametrize("ini", [BATV, REQUIRED], ids=["optional", "required"])
def test_forged_and_expired_tags_are_refused(ini: str) -> None:
    forged = batv.make_tag("bob@example.org", ("someone-else",), TODAY)
    assert refusal(run_rcpt(f"<{forged}>", ini=ini)) == "backscatter.bad-tag"
    tagged = batv.make_tag("bob@example.org", ("new-secret",), TODAY)
    expired = run_rcpt(f"<{tagged}>", ini=ini, now=NOW + 8 * 86400)
    assert refusal(expired) == "backscatter.expired-tag"
    assert "expired" in expired.decision.text


def test_tag_of_another_domain_is_not_ours() -> None:
    tagged = batv.make_tag("bob@example.org", ("new-secret",), TODAY)
    moved = tagged.replace("@example.org", "@mx.example.org")
    assert refusal(run_rcpt(f"<{moved}>")) == "backscatter.bad-tag"


def test_untagged_bounce_refused_only_when_required() -> None:
    assert run_rcpt("<bob@example.org>").verdicts == ()
    result = run_rcpt("<bob@example.org>", ini=REQUIRED)
    assert refusal(result) == "backscatter.untagged-bounce"
    assert "not BATV tagged" in result.decision.text
    # Not a bounce: untagged addresses are the normal case.
    assert (
        run_rcpt("<bob@example.org>", sender="<x@elsewhere.example>", ini=REQUIRED).verdicts == ()
    )


@pytest.mark.parametrize(
    "recipient", ["<postmaster@example.org>", "<Abuse@example.org>", "<postmaster>"]
)
def test_postmaster_and_abuse_take_untagged_bounces(recipient: str) -> None:
    assert run_rcpt(recipient, ini=REQUIRED).decision is None


def test_monitor_mode_only_tags() -> None:
    result = run_rcpt("<bob@example.org>", ini=REQUIRED + "mode = monitor\n")
    assert result.decision is None
    assert result.verdicts[0].monitored is Action.REJECT


# -- refusals without BATV ----------------------------------------------------------------------


def test_bounce_with_more_than_one_recipient() -> None:
    assert run_rcpt("<bob@example.org>", ini="").verdicts == ()
    second = run_rcpt("<carol@example.org>", ini="", accepted=("<bob@example.org>",))
    assert refusal(second) == "backscatter.multi-recipient-bounce"
    ordinary = run_rcpt(
        "<carol@example.org>", sender="<x@elsewhere.example>", ini="", accepted=("<b@example.org>",)
    )
    assert ordinary.verdicts == ()


@pytest.mark.parametrize("sender", ["<>", "<x@elsewhere.example>"])
def test_mail_to_mailer_daemon(sender: str) -> None:
    result = run_rcpt("<MAILER-DAEMON@example.org>", sender=sender, ini="")
    assert refusal(result) == "backscatter.mailer-daemon"
    assert run_rcpt("<mailer-daemon@elsewhere.example>", sender=sender, ini="").verdicts == ()


# -- exemptions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("connection", [AUTHENTICATED, TRUSTED], ids=["authenticated", "trusted"])
def test_exempt_clients_are_not_refused_but_still_untagged(connection: Connection) -> None:
    forged = batv.make_tag("bob@example.org", ("someone-else",), TODAY)
    for raw, accepted in [
        ("<bob@example.org>", ()),
        (f"<{forged}>", ()),
        ("<mailer-daemon@example.org>", ()),
        ("<carol@example.org>", ("<bob@example.org>",)),
    ]:
        result = run_rcpt(raw, connection=connection, ini=REQUIRED, accepted=accepted)
        assert result.verdicts == (), raw
    tagged = batv.make_tag("bob@example.org", ("new-secret",), TODAY)
    result = run_rcpt(f"<{tagged}>", connection=connection, ini=REQUIRED)
    assert result.verdicts[0].envelope == (ReplaceRecipient(f"<{tagged}>", "bob@example.org"),)


def test_access_list_allow_skips_the_refusals(tmp_path) -> None:
    files = tmp_path / "access"
    files.write_text("203.0.113.9 allow partner\n")
    settings = config.load("t.ini", text=SITE + REQUIRED + f"[access]\nfiles = {files}\n")
    pipe = Pipeline([(c, settings.checks[c.name]) for c in (access.CHECK, backscatter.CHECK)])
    facts = Facts(Stage.MAIL, OUTSIDER, Envelope("<>", parse_path("<>", allow_null=True)))
    at_mail = pipe.run(Stage.MAIL, facts, services(SITE, now=NOW))
    assert [v.outcome for v in at_mail.verdicts] == ["access.allow"]
    result = run_rcpt("<bob@example.org>", ini=REQUIRED, findings=at_mail.findings)
    assert result.decision is None


def test_non_local_and_unparseable_recipients_are_left_to_relay() -> None:
    for raw in ("<bob@elsewhere.example>", "<bob..x@example.org>", "<bob@[192.0.2.1]>"):
        assert run_rcpt(raw, ini=REQUIRED, accepted=("<b@example.org>",)).verdicts == ()


def test_mta_rejected_recipient_is_ignored() -> None:
    settings = config.load("t.ini", text=SITE + REQUIRED)
    facts = Facts(
        Stage.RCPT,
        OUTSIDER,
        Envelope("<>", parse_path("<>", allow_null=True)),
        Recipient("<bob@example.org>", parse_path("<bob@example.org>"), mta_rejected=True),
    )
    verdict = decide(
        backscatter.CHECK,
        facts,
        backscatter.prepare(settings.checks["backscatter"]),
        services(SITE, now=NOW),
    )
    assert verdict is None


def test_lifetime_option() -> None:
    tagged = tag_of(run_mail("<alice@example.org>", ini=BATV + "batv_lifetime = 2d\n"))
    assert batv.parse_tag(tagged).day == (TODAY + 2) % 1000
    late = run_rcpt(f"<{tagged}>", ini=BATV + "batv_lifetime = 2d\n", now=NOW + 3 * 86400)
    assert refusal(late) == "backscatter.expired-tag"


def test_settings_defaults() -> None:
    settings = config.load("t.ini", text=SITE).checks["backscatter"]
    assert settings.batv_secret == () and settings.batv_required is False
    assert dataclasses.asdict(backscatter.prepare(settings))["lifetime"] == 7
