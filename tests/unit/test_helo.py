"""The helo check: forged, non-FQDN and invalid HELO names, decided at MAIL FROM."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from mxguard.checks import helo
from mxguard.core import config
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Envelope, Facts, Stage
from mxguard.core.pipeline import Pipeline
from mxguard.core.verdict import Action, Verdict
from mxguard.mail.address import parse_path

from .fakes import run_check, services

SITE = (
    "[milter]\n"
    "hostnames = mx.example.org, mx2.example.org\n"
    "local_domains = example.org, example.net\n"
)
ip = ipaddress.ip_address
OUTSIDER = Connection(
    client_ip=ip("203.0.113.9"),
    client_name="mail.sender.example",
    interface_ip=ip("198.51.100.25"),
    mta_name="gw.example.org",
)
OUTSIDER_V6 = dataclasses.replace(
    OUTSIDER, client_ip=ip("2001:db8:5::9"), interface_ip=ip("2001:db8::25")
)
SENDER = "<x@sender.example>"


def mail_facts(helo_name: str, connection: Connection = OUTSIDER) -> Facts:
    """The facts at MAIL FROM of a client that greeted with ``helo_name``."""
    return Facts(
        Stage.MAIL,
        dataclasses.replace(connection, helo=helo_name),
        Envelope(SENDER, parse_path(SENDER)),
    )


def decide(
    helo_name: str, connection: Connection = OUTSIDER, options: str = "", ini: str = SITE
) -> Verdict | None:
    """The helo check's verdict, with ``options`` added to a [helo] section."""
    text = ini + "[helo]\n" + options
    settings = config.load("t.ini", text=text).checks["helo"]
    return run_check(helo.CHECK, mail_facts(helo_name, connection), settings, services(text))[0]


def assert_rejected(verdict: Verdict | None, outcome: str, fragment: str) -> None:
    assert verdict is not None and verdict.action is Action.REJECT, verdict
    assert verdict.outcome == outcome
    assert verdict.reply is not None
    assert (verdict.reply.smtp_code, verdict.reply.dsn_code) == ("550", "5.7.1")
    assert verdict.text.startswith("helo: ")
    assert fragment in verdict.text


# --------------------------------------------------------------------------- forged


@pytest.mark.parametrize(
    ("name", "connection", "fragment"),
    [
        pytest.param("mx.example.org", OUTSIDER, "mx.example.org is our own host name", id="host"),
        pytest.param("mx2.example.org", OUTSIDER, "is our own host name", id="second-host"),
        pytest.param("MX.Example.ORG", OUTSIDER, "is our own host name", id="host-upper"),
        pytest.param("mx.example.org.", OUTSIDER, "is our own host name", id="host-dot"),
        pytest.param("gw.example.org", OUTSIDER, "is our own host name", id="mta-name-j"),
        pytest.param("example.org", OUTSIDER, "example.org is our own domain", id="domain"),
        pytest.param("EXAMPLE.NET.", OUTSIDER, "is our own domain", id="domain-upper-dot"),
        pytest.param("[198.51.100.25]", OUTSIDER, "is our own address", id="our-literal"),
        pytest.param(
            "[192.0.2.1]", OUTSIDER, "[192.0.2.1] is not your address (203.0.113.9)", id="foreign"
        ),
        pytest.param("[IPv6:2001:db8::1]", OUTSIDER, "is not your address", id="v6-from-v4"),
        pytest.param("[x-tag:whatever]", OUTSIDER, "is not your address", id="general-literal"),
        pytest.param("[IPv6:2001:db8::25]", OUTSIDER_V6, "is our own address", id="v6-ours"),
        pytest.param(
            "[IPv6:2001:DB8:0:0:0:0:0:25]", OUTSIDER_V6, "is our own address", id="v6-ours-long"
        ),
        pytest.param("[IPv6:2001:db8:5::10]", OUTSIDER_V6, "is not your address", id="v6-foreign"),
        pytest.param("[203.0.113.9]", OUTSIDER_V6, "is not your address", id="v4-from-v6"),
    ],
)
def test_forged_helo_is_refused(name: str, connection: Connection, fragment: str) -> None:
    assert_rejected(decide(name, connection), "helo.forged", fragment)


@pytest.mark.parametrize(
    ("name", "connection"),
    [
        pytest.param("mail.sender.example", OUTSIDER, id="fqdn"),
        pytest.param("Mail.Sender.Example.", OUTSIDER, id="upper-trailing-dot"),
        pytest.param("sub.example.org", OUTSIDER, id="under-a-local-domain"),
        pytest.param("[203.0.113.9]", OUTSIDER, id="own-literal"),
        pytest.param("[203.0.113.09]", OUTSIDER, id="own-literal-leading-zero"),
        pytest.param("[IPv6:::ffff:203.0.113.9]", OUTSIDER, id="own-literal-v4-mapped"),
        pytest.param("[IPv6:2001:db8:5::9]", OUTSIDER_V6, id="own-v6-literal"),
        pytest.param("[IPv6:2001:0db8:0005:0:0:0:0:0009]", OUTSIDER_V6, id="own-v6-long"),
        pytest.param("win_pc.corp.example", OUTSIDER, id="underscore"),
        pytest.param("_dmarc-ish_.corp.example", OUTSIDER, id="underscore-edges"),
        pytest.param("bücher.example", OUTSIDER, id="u-label"),
        pytest.param("a" * 63 + ".example", OUTSIDER, id="63-octet-label"),
    ],
)
def test_plausible_helo_passes(name: str, connection: Connection) -> None:
    assert decide(name, connection) is None


def test_mapped_literal_matches_the_plain_client_address() -> None:
    # The adapter gives client_ip as plain IPv4 (tests/unit/test_adapter.py); a literal written
    # as an IPv4-mapped IPv6 address is the same host.
    assert decide("[IPv6:::ffff:203.0.113.9]", OUTSIDER) is None


def test_literal_from_a_non_ip_client_cannot_be_judged() -> None:
    local = dataclasses.replace(OUTSIDER, client_ip=None, interface_ip=None)
    assert decide("[192.0.2.1]", local) is None


@pytest.mark.parametrize(
    ("setting", "action"),
    [
        pytest.param("reject", Action.REJECT, id="reject"),
        pytest.param("tag", Action.TAG, id="tag"),
        pytest.param("off", None, id="off"),
    ],
)
def test_forged_setting(setting: str, action: Action | None) -> None:
    verdict = decide("mx.example.org", options=f"forged = {setting}\n")
    assert (verdict.action if verdict else None) is action
    if verdict is not None:
        assert verdict.outcome == "helo.forged"


def test_forged_off_still_judges_the_name_itself() -> None:
    ini = SITE.replace("mx.example.org,", "mx.example.org, mx,")
    verdict = decide("mx", options="forged = off\n", ini=ini)
    assert verdict is not None and verdict.outcome == "helo.non-fqdn"


def test_without_site_names_only_literals_can_be_forged() -> None:
    assert decide("mx.example.org", ini="") is None
    assert_rejected(decide("[192.0.2.1]", ini=""), "helo.forged", "is not your address")


# --------------------------------------------------------------------------- non-FQDN


@pytest.mark.parametrize("name", ["localhost", "WIN-7Q2JD", "my_pc", "localhost."])
@pytest.mark.parametrize(
    ("setting", "action"),
    [
        pytest.param("", Action.TAG, id="default-tag"),
        pytest.param("non_fqdn = reject\n", Action.REJECT, id="reject"),
        pytest.param("non_fqdn = off\n", None, id="off"),
    ],
)
def test_single_label_helo(name: str, setting: str, action: Action | None) -> None:
    verdict = decide(name, options=setting)
    assert (verdict.action if verdict else None) is action
    if verdict is not None:
        assert verdict.outcome == "helo.non-fqdn"
        assert "is not a fully qualified name" in verdict.reason


# --------------------------------------------------------------------------- syntax


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        pytest.param("203.0.113.9", "an IP address without [brackets]", id="bare-ipv4"),
        pytest.param("2001:db8:5::9", "an IP address without [brackets]", id="bare-ipv6"),
        pytest.param("203.0.113.9.", "an IP address without [brackets]", id="bare-ipv4-dot"),
        pytest.param("1.2.3", "a numeric name", id="numeric"),
        pytest.param("", "(empty) is not a valid host name", id="empty"),
        pytest.param("mx example.org", "invalid character", id="inner-space"),
        pytest.param(" mx.sender.example", "invalid character", id="leading-space"),
        pytest.param("mx..sender.example", "empty label", id="double-dot"),
        pytest.param("mx.sender.example..", "empty label", id="two-trailing-dots"),
        pytest.param(".sender.example", "empty label", id="leading-dot"),
        pytest.param("-mx.sender.example", "hyphen", id="leading-hyphen"),
        pytest.param("a" * 64 + ".example", "label too long", id="overlong-label"),
        pytest.param("mx\x00.sender.example", "control character", id="nul"),
        pytest.param("mx\r\n.example", "control character", id="crlf"),
        pytest.param("mx@sender.example", "invalid character", id="at-sign"),
        pytest.param("[203.0.113.256]", "invalid IPv4 literal", id="bad-literal"),
        pytest.param("[203.0.113.9", "unbalanced bracket", id="unclosed-literal"),
        pytest.param("[IPv6:1.2::203.0.113.9]", "invalid IPv6 literal", id="bad-v6-literal"),
        pytest.param("under_score..example", "empty label", id="underscore-no-excuse"),
    ],
)
def test_invalid_helo_is_refused(name: str, fragment: str) -> None:
    verdict = decide(name)
    assert_rejected(verdict, "helo.syntax", fragment)
    assert "is not a valid host name" in verdict.text


def test_syntax_can_be_only_tagged() -> None:
    verdict = decide("203.0.113.9", options="syntax = tag\n")
    assert verdict is not None and verdict.action is Action.TAG
    assert verdict.outcome == "helo.syntax"


def test_reply_never_carries_control_characters() -> None:
    verdict = decide("evil\x00\r\nRCPT TO:<x@y>")
    assert verdict is not None
    assert not any(ord(char) < 32 for char in verdict.text)


# --------------------------------------------------------------------------- who is judged


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param(dataclasses.replace(OUTSIDER, trusted=True), id="trusted"),
        pytest.param(dataclasses.replace(OUTSIDER, auth_user="carol@example.org"), id="auth"),
    ],
)
@pytest.mark.parametrize("name", ["mx.example.org", "[192.0.2.1]", "", "localhost"])
def test_our_own_clients_are_exempt(connection: Connection, name: str) -> None:
    assert decide(name, connection) is None


# --------------------------------------------------------------------------- through the pipeline


def helo_pipeline(ini: str = SITE) -> Pipeline:
    settings = config.load("t.ini", text=ini)
    return Pipeline([(helo.CHECK, settings.checks["helo"])])


def test_nothing_is_decided_at_helo_only_at_mail() -> None:
    pipeline = helo_pipeline()
    connection = dataclasses.replace(OUTSIDER, helo="mx.example.org")
    assert not pipeline.acts_on(Stage.HELO) and not pipeline.wants(Stage.HELO)
    assert pipeline.acts_on(Stage.MAIL)
    at_helo = pipeline.run(Stage.HELO, Facts(Stage.HELO, connection), services(SITE))
    assert at_helo.decision is None and at_helo.verdicts == ()
    at_mail = pipeline.run(Stage.MAIL, mail_facts("mx.example.org"), services(SITE))
    assert_rejected(at_mail.decision, "helo.forged", "is our own host name")


def test_login_after_helo_exempts_the_client() -> None:
    # The same connection that would be refused is let through once AUTH has happened.
    authenticated = dataclasses.replace(OUTSIDER, auth_user="carol")
    result = helo_pipeline().run(
        Stage.MAIL, mail_facts("mx.example.org", authenticated), services(SITE)
    )
    assert result.decision is None and result.verdicts == ()


@pytest.mark.parametrize(
    "ini",
    [
        pytest.param(SITE + "[helo]\nmode = monitor\n", id="check-monitor"),
        pytest.param(SITE + "mode = monitor\n", id="milter-monitor"),
    ],
)
def test_monitor_mode_turns_a_rejection_into_a_tag(ini: str) -> None:
    result = helo_pipeline(ini).run(Stage.MAIL, mail_facts("[192.0.2.1]"), services(ini))
    assert result.decision is None
    (verdict,) = result.verdicts
    assert verdict.action is Action.TAG and verdict.monitored is Action.REJECT
    assert verdict.outcome == "helo.forged"


def test_default_order_is_access_relay_helo() -> None:
    names = list(config.load("t.ini", text="").milter.order)
    assert names.index("access") < names.index("relay") < names.index("helo")
    assert names.index("helo") == names.index("relay") + 1


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param(
            "forged = maybe\n",
            "t.ini: [helo] forged: expected one of off, tag, reject, got 'maybe'",
            id="forged-value",
        ),
        pytest.param(
            "syntax = off\n",
            "t.ini: [helo] syntax: expected one of tag, reject, got 'off'",
            id="syntax-cannot-be-off",
        ),
        pytest.param(
            "non-fqdn = tag\n",
            "t.ini: [helo] non-fqdn: unknown option; did you mean 'non_fqdn'?",
            id="misspelt-option",
        ),
    ],
)
def test_configuration_errors_name_file_section_and_option(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.load("t.ini", text="[helo]\n" + section)
    assert message in str(raised.value)


def test_defaults() -> None:
    settings = config.load("t.ini", text="").checks["helo"]
    assert (settings.forged, settings.non_fqdn, settings.syntax) == ("reject", "tag", "reject")
    assert settings.enabled
