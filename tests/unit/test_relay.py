"""The relay check: routing tricks and off-site recipients from outside clients."""

from __future__ import annotations

import ipaddress

import pytest

from mxguard.checks import relay
from mxguard.core import config
from mxguard.core.facts import Connection, Envelope, Facts, Recipient, Stage
from mxguard.core.verdict import Action
from mxguard.mail.address import parse_path

from .fakes import run_check, services

SITE = "[milter]\nlocal_domains = example.org, example.net\nhostnames = mx.example.org\n"
OUTSIDER = Connection(
    client_ip=ipaddress.ip_address("203.0.113.9"),
    interface_ip=ipaddress.ip_address("198.51.100.25"),
)


def decide(
    raw: str, connection: Connection = OUTSIDER, ini: str = SITE, mta_rejected: bool = False
):
    settings = config.load("t.ini", text=ini).checks["relay"]
    facts = Facts(
        Stage.RCPT,
        connection,
        Envelope("<x@sender.example>", parse_path("<x@sender.example>")),
        Recipient(raw, parse_path(raw), mta_rejected=mta_rejected),
    )
    return run_check(relay.CHECK, facts, settings, services(ini))[0]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("<alice@example.org>", id="local-domain"),
        pytest.param("<Alice@EXAMPLE.NET>", id="case-insensitive"),
        pytest.param("<alice@mx.example.org>", id="our-hostname"),
        pytest.param("<postmaster>", id="bare-postmaster"),
        pytest.param('<"john smith"@example.org>', id="quoted-harmless"),
        pytest.param("<alice@[198.51.100.25]>", id="our-interface-literal"),
        pytest.param("<δοκιμή@example.org>", id="utf8-local-part"),
    ],
)
def test_accepts_local_recipients(raw: str) -> None:
    assert decide(raw) is None


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        pytest.param("<alice%evil.example@example.org>", "relay.percent-hack", id="percent-at"),
        pytest.param("<alice%evil.example>", "relay.percent-hack", id="percent-bare"),
        pytest.param("<evil.example!alice@example.org>", "relay.bang-path", id="bang-at"),
        pytest.param("<evil.example!alice>", "relay.bang-path", id="bang-bare"),
        pytest.param(
            "<@a.example,@b.example:alice@example.org>", "relay.source-route", id="source-route"
        ),
        pytest.param('<"alice@evil.example"@example.org>', "relay.quoted-route", id="quoted-at"),
        pytest.param(
            '<"alice%evil.example"@example.org>', "relay.quoted-route", id="quoted-percent"
        ),
        pytest.param('<"evil!alice"@example.org>', "relay.quoted-route", id="quoted-bang"),
        pytest.param("<alice@evil.example@example.org>", "relay.multiple-at", id="two-ats"),
        pytest.param("<alice@[192.0.2.1]>", "relay.foreign-literal", id="foreign-literal"),
        pytest.param("<alice@[IPv6:2001:db8::1]>", "relay.foreign-literal", id="v6-literal"),
        pytest.param("<alice@evil.example>", "relay.foreign-domain", id="foreign-domain"),
        pytest.param("<alice@sub.example.org>", "relay.foreign-domain", id="subdomain"),
    ],
)
def test_refuses_tricks_and_foreign_domains(raw: str, outcome: str) -> None:
    verdict = decide(raw)
    assert verdict is not None and verdict.action is Action.REJECT
    assert verdict.outcome == outcome
    assert (verdict.reply.smtp_code, verdict.reply.dsn_code) == ("550", "5.7.1")
    assert verdict.text.startswith("relay: ")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("<alice..x@example.org>", id="double-dot"),
        pytest.param("<alice@exa_mple..org>", id="bad-domain"),
        pytest.param("<al ice@example.org>", id="space"),
        pytest.param("<alice@example.org", id="unclosed"),
        pytest.param("<alice\x00@example.org>", id="nul"),
        pytest.param("<>", id="null-path"),
        pytest.param("<" + "a" * 65 + "@example.org>", id="local-part-too-long"),
    ],
)
def test_malformed_recipients_get_501(raw: str) -> None:
    verdict = decide(raw)
    assert verdict is not None and verdict.outcome == "relay.bad-address"
    assert (verdict.reply.smtp_code, verdict.reply.dsn_code) == ("501", "5.1.3")


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param(
            Connection(client_ip=ipaddress.ip_address("10.0.0.1"), trusted=True), id="trusted"
        ),
        pytest.param(
            Connection(client_ip=ipaddress.ip_address("203.0.113.9"), auth_user="carol"),
            id="authenticated",
        ),
    ],
)
def test_our_own_clients_may_relay(connection: Connection) -> None:
    assert decide("<bob@elsewhere.example>", connection) is None
    assert decide("<alice%evil.example@example.org>", connection) is None


def test_literals_accepted_by_configuration() -> None:
    ini = SITE + "[relay]\naccept_literals = 192.0.2.0/24\n"
    assert decide("<alice@[192.0.2.1]>", ini=ini) is None


def test_recipient_the_mta_already_refused_is_left_alone() -> None:
    assert decide("<alice@evil.example>", mta_rejected=True) is None


def test_without_local_domains_only_tricks_are_refused() -> None:
    assert decide("<alice@anything.example>", ini="") is None
    assert decide("<alice%x@anything.example>", ini="").outcome == "relay.percent-hack"


def test_reply_never_carries_control_characters() -> None:
    verdict = decide("<alice%evil\r\n@example.org>")
    assert verdict is not None and "\r" not in verdict.text and "\n" not in verdict.text
