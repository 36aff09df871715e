"""The spoof check, reading the real spf check's verdict, against a real DNS server."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from mxguard.checks import spoof
from mxguard.core import config
from mxguard.core.check import Services
from mxguard.core.dns import ConnectionLookups, Resolver
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Envelope, Facts, Message, Stage
from mxguard.core.findings import TrustedSealer
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline, StageResult
from mxguard.core.verdict import Action, Verdict
from mxguard.mail.address import parse_path
from mxguard.mail.domains import within
from tests.support.dnsserver import TestDnsServer
from tests.unit import fakes

# example.org publishes SPF for 203.0.113.0/24 (-all), soft.example.org ~all, and
# plain.example publishes no SPF at all; the three and mx.example.org are ours.
ZONE = """
$TTL 300
example.org.          IN SOA ns.example.org. hostmaster.example.org. 1 3600 600 86400 60
example.org.          IN MX  10 mx.example.org.
example.org.          IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
mx.example.org.       IN A   198.51.100.25
soft.example.org.     IN TXT "v=spf1 ip4:203.0.113.0/24 ~all"
relay.example.org.    IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
plain.example.        IN SOA ns.plain.example. hostmaster.plain.example. 1 3600 600 86400 60
plain.example.        IN MX  10 mx.example.org.
outside.example.      IN SOA ns.outside.example. hostmaster.outside.example. 1 3600 600 86400 60
outside.example.      IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
client.outside.example. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
"""

SITE = "[milter]\nlocal_domains = example.org, plain.example\nhostnames = mx.example.org\n"
OUR_RELAY = ipaddress.ip_address("203.0.113.9")  # permitted by example.org's SPF
STRANGER = ipaddress.ip_address("192.0.2.7")  # permitted only by outside.example's SPF


@pytest.fixture(scope="module")
def server() -> Iterator[TestDnsServer]:
    with TestDnsServer(ZONE) as dns:
        yield dns


@pytest.fixture
def resolver(server: TestDnsServer) -> Iterator[Resolver]:
    resolver = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=0.5)
    yield resolver
    resolver.close()


def mail(
    resolver: Resolver,
    sender: str,
    ip=STRANGER,
    ini: str = "",
    checks: tuple[str, ...] = ("spf", "spoof"),
    helo: str = "client.outside.example",
    **connection: object,
) -> StageResult:
    """Run MAIL FROM ``sender`` through a pipeline with the enabled ones of ``checks``."""
    settings = config.load("t.ini", text=SITE + ini)
    pipeline = Pipeline([(c, s) for c, s in settings.ordered_checks() if c.name in checks])
    services = Services(
        site=settings.milter,
        dns=ConnectionLookups(resolver),
        clock=lambda: 1_000_000.0,
        notices=Notices(lambda: 1_000_000.0),
    )
    conn = Connection(client_ip=ip, helo=helo, **connection)
    facts = Facts(Stage.MAIL, conn, Envelope(sender, parse_path(sender, allow_null=True)))
    return pipeline.run(Stage.MAIL, facts, services)


def spoof_verdict(result: StageResult) -> Verdict | None:
    found = [v for v in result.verdicts if v.check == "spoof"]
    return found[0] if found else None


SPF_FAIL_TAGS = "[spf]\non_fail = tag\n"


@pytest.mark.parametrize(
    ("sender", "ip", "ini", "evidence"),
    [
        pytest.param("<ceo@example.org>", STRANGER, SPF_FAIL_TAGS, "SPF fail", id="spf-fail"),
        pytest.param("<ceo@soft.example.org>", STRANGER, "", "SPF softfail", id="spf-softfail"),
        pytest.param("<ceo@plain.example>", STRANGER, "", "SPF none", id="no-spf-record"),
        pytest.param("<ceo@plain.example>", OUR_RELAY, "", "SPF none", id="no-spf-any-ip"),
        pytest.param("<ceo@sub.example.org>", STRANGER, "", "SPF none", id="subdomain-no-spf"),
        pytest.param("<ceo@a.b.plain.example>", STRANGER, "", "SPF none", id="deep-subdomain"),
        pytest.param("<ceo@mx.example.org>", STRANGER, "", "SPF none", id="our-hostname"),
        pytest.param("<CEO@Example.ORG>", STRANGER, SPF_FAIL_TAGS, "SPF fail", id="upper-case"),
        pytest.param(
            "<ceo@example.org>", STRANGER, "[spf]\nenabled = no\n", "no SPF pass", id="spf-off"
        ),
        pytest.param(
            "<ceo@example.org>",
            STRANGER,
            "[spf]\ntrusted_forwarders = 192.0.2.0/24\n",
            "no SPF pass",
            id="spf-forwarder-not-exempt",
        ),
        pytest.param(
            "<ceo@example.org>",
            STRANGER,
            "[spf]\nmode = monitor\n",
            "SPF fail",
            id="spf-monitor-fail",
        ),
        pytest.param(
            "<ceo@example.org>",
            STRANGER,
            "[spf]\non_fail = continue\n",
            "SPF fail",
            id="spf-fail-continue",
        ),
    ],
)
def test_our_domain_without_spf_pass_is_refused(
    resolver: Resolver, sender: str, ip, ini: str, evidence: str
) -> None:
    result = mail(resolver, sender, ip, ini)
    decision = result.decision
    assert decision is not None and decision.action is Action.REJECT, result.verdicts
    assert decision.outcome == "spoof.local-domain"
    assert (decision.reply.smtp_code, decision.reply.dsn_code) == ("550", "5.7.1")
    assert decision.text.startswith("spoof: ")
    assert f"from outside ({ip}, {evidence})" in decision.text


def test_reply_names_sender_and_our_domain(resolver: Resolver) -> None:
    decision = mail(resolver, "<ceo@sub.example.org>").decision
    assert decision.text == (
        "spoof: ceo@sub.example.org uses our domain example.org from outside (192.0.2.7, SPF none)"
    )


@pytest.mark.parametrize(
    ("sender", "ip", "ini"),
    [
        pytest.param("<ceo@example.org>", OUR_RELAY, "", id="spf-pass"),
        pytest.param("<ceo@soft.example.org>", OUR_RELAY, "", id="subdomain-spf-pass"),
        pytest.param("<ceo@relay.example.org>", STRANGER, "", id="subdomain-own-spf-pass"),
        pytest.param("<a@outside.example>", STRANGER, "", id="foreign-domain"),
        pytest.param("<a@notexample.org>", STRANGER, "", id="lookalike-suffix"),
        pytest.param("<a@example.org.evil.example>", STRANGER, "", id="ours-as-prefix"),
        pytest.param("<>", STRANGER, "", id="null-sender"),
        pytest.param("<ceo@[192.0.2.7]>", STRANGER, "", id="address-literal"),
        pytest.param("<ceo@@example.org>", STRANGER, "", id="unparsable-left-to-sender"),
        pytest.param(
            "<ceo@example.org>",
            STRANGER,
            "[spf]\ntrusted_forwarders = 192.0.2.0/28\n[spoof]\nforwarders = 192.0.2.0/28\n",
            id="forwarder-in-both-lists",
        ),
        pytest.param(
            "<ceo@example.org>",
            STRANGER,
            "[spoof]\nenabled = no\n[spf]\non_fail = tag\n",
            id="spoof-off",
        ),
    ],
)
def test_accepted(resolver: Resolver, sender: str, ip, ini: str) -> None:
    result = mail(resolver, sender, ip, ini)
    assert result.decision is None, result.decision
    assert spoof_verdict(result) is None


def test_spf_fail_with_reject_is_refused_by_spf_first(resolver: Resolver) -> None:
    decision = mail(resolver, "<ceo@example.org>").decision
    assert decision.check == "spf" and decision.outcome == "spf.fail"


def test_a_helo_pass_does_not_clear_the_mail_from(resolver: Resolver) -> None:
    # client.outside.example permits 192.0.2.7: spf=pass smtp.helo, spf=none smtp.mailfrom.
    result = mail(resolver, "<ceo@plain.example>")
    spf_auth = next(v for v in result.verdicts if v.check == "spf").auth
    assert ("pass", "helo") in [(a.result, a.properties[0][1]) for a in spf_auth]
    assert result.decision.outcome == "spoof.local-domain"


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param({"trusted": True}, id="trusted"),
        pytest.param({"auth_user": "carol@example.org"}, id="authenticated"),
        pytest.param({"auth_user": "carol", "submission": True}, id="submission-auth"),
    ],
)
def test_our_own_clients_may_use_our_domains(resolver: Resolver, connection: dict) -> None:
    result = mail(resolver, "<ceo@plain.example>", STRANGER, **connection)
    assert result.decision is None and spoof_verdict(result) is None


def test_monitor_mode_tags_what_it_would_refuse(resolver: Resolver) -> None:
    result = mail(resolver, "<ceo@plain.example>", ini="[spoof]\nmode = monitor\n")
    assert result.decision is None
    verdict = spoof_verdict(result)
    assert verdict.action is Action.TAG and verdict.monitored is Action.REJECT


def test_milter_monitor_mode_is_inherited(resolver: Resolver) -> None:
    # Right after SITE, so the line belongs to its [milter] section.
    result = mail(resolver, "<ceo@plain.example>", ini="mode = monitor\n")
    assert result.decision is None
    verdict = spoof_verdict(result)
    assert verdict.outcome == "spoof.local-domain" and verdict.monitored is Action.REJECT


def test_without_local_domains_nothing_is_ours(resolver: Resolver) -> None:
    settings = config.load("t.ini", text="").checks["spoof"]
    services = Services(
        site=config.load("t.ini", text="").milter,
        dns=ConnectionLookups(resolver),
        clock=lambda: 0.0,
        notices=Notices(lambda: 0.0),
    )
    facts = Facts(
        Stage.MAIL,
        Connection(client_ip=STRANGER),
        Envelope("<a@example.org>", parse_path("<a@example.org>")),
    )
    assert fakes.decide(spoof.CHECK, facts, settings, services) is None


def found(method: str, result: str, ptype: str, name: str, value: str) -> tuple:
    """The finding an earlier check provides for one result."""
    if method == "spf":
        return (fakes.spf_results(result, value, name),)
    return (fakes.dkim_signatures((value, result)),)


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        pytest.param((), "", id="nothing"),
        pytest.param(
            found("spf", "pass", "smtp", "mailfrom", "a@x.example"), "pass", id="mailfrom-pass"
        ),
        pytest.param(found("spf", "pass", "smtp", "helo", "x.example"), "", id="helo-only"),
        pytest.param(
            found("spf", "pass", "smtp", "mailfrom", "a@y.example"), "", id="other-domain"
        ),
        pytest.param(found("dkim", "pass", "header", "d", "x.example"), "", id="other-method"),
    ],
)
def test_spf_result_reading(earlier: tuple, expected: str) -> None:
    facts = Facts(Stage.MAIL, Connection(client_ip=STRANGER), findings=fakes.findings(*earlier))
    result = spoof._spf_of(facts, "x.example")
    assert (result.result if result else "") == expected


@pytest.mark.parametrize(
    ("domain", "ours"),
    [
        pytest.param("example.org", "example.org", id="exact"),
        pytest.param("a.b.example.org", "example.org", id="subdomain"),
        pytest.param("badexample.org", "", id="lookalike"),
        pytest.param("example.org.evil", "", id="prefix"),
        pytest.param("org", "", id="parent"),
    ],
)
def test_our_domain(domain: str, ours: str) -> None:
    assert within(domain, ("example.org", "example.net")) == ours
    site = config.load("t.ini", text="[milter]\nlocal_domains = example.org, example.net\n")
    assert site.milter.our_domain(domain) == ours


def test_bad_forwarders_name_file_section_and_option() -> None:
    with pytest.raises(ConfigError, match=r"t\.ini: \[spoof\] forwarders: expected"):
        config.load("t.ini", text="[spoof]\nforwarders = 192.0.2.0/33\n")


# -- the header From, at end of message ---------------------------------------------------------


def eom(
    from_values: tuple[str, ...],
    earlier: tuple = (),
    ip: str = "192.0.2.7",
    **connection,
) -> Verdict | None:
    facts = Facts(
        Stage.EOM,
        Connection(client_ip=ipaddress.ip_address(ip), **connection),
        Envelope("<bounce@lists.example>", parse_path("<bounce@lists.example>")),
        message=Message.from_text([("From", value) for value in from_values]),
        findings=fakes.findings(*earlier),
    )
    return fakes.decide(spoof.CHECK, facts, spoof.SpoofSettings(), fakes.services(SITE))


def dkim(domain: str, result: str = "pass") -> tuple:
    return found("dkim", result, "header", "d", domain)


def test_our_domain_in_from_without_aligned_dkim_is_refused() -> None:
    verdict = eom(("CEO <ceo@example.org>",))
    assert verdict is not None and verdict.action is Action.REJECT
    assert verdict.outcome == "spoof.header-from"
    assert verdict.text == (
        "spoof: From: ceo@example.org uses our domain example.org from outside (192.0.2.7) "
        "without an aligned DKIM signature"
    )
    assert eom(("ceo@mail.example.org",)).action is Action.REJECT  # a subdomain is ours too
    assert eom(("ceo@example.org",), dkim("example.org", "fail")).action is Action.REJECT
    assert eom(("ceo@example.org",), dkim("lists.example")).action is Action.REJECT


@pytest.mark.parametrize("signer", ["example.org", "news.example.org"])
def test_aligned_dkim_pass_is_accepted(signer: str) -> None:
    assert eom(("ceo@example.org",), dkim(signer)) is None


@pytest.mark.parametrize(
    "values",
    [
        ("a@outside.example, ceo@example.org",),
        ("<ceo@example.org> <a@outside.example>",),
        ("a@outside.example", "ceo@example.org"),
        ('"unterminated <ceo@example.org>',),
        ("Team: ceo@example.org;",),
    ],
)
def test_malformed_from_naming_our_domain_is_refused_even_with_dkim(values) -> None:
    verdict = eom(values, dkim("outside.example"))
    assert verdict is not None and verdict.action is Action.REJECT
    assert "cannot be verified" in verdict.text


@pytest.mark.parametrize(
    ("values", "earlier", "connection"),
    [
        (("someone@outside.example",), (), {}),
        (("a@outside.example, b@elsewhere.example",), (), {}),  # malformed, but not ours
        (("ceo@notexample.org",), (), {}),
        (("ceo@example.org",), (), {"trusted": True}),
        (("ceo@example.org",), (), {"auth_user": "ceo"}),
        (
            ("ceo@example.org",),
            (TrustedSealer("lists.example"),),
            {},
        ),
    ],
)
def test_header_from_accepted(values, earlier, connection) -> None:
    assert eom(values, earlier, **connection) is None


def test_forwarders_may_bring_our_from_back() -> None:
    facts = Facts(
        Stage.EOM,
        Connection(client_ip=ipaddress.ip_address("192.0.2.7")),
        None,
        message=Message.from_text([("From", "ceo@example.org")]),
    )
    settings = config.load("t.ini", text=SITE + "[spoof]\nforwarders = 192.0.2.0/24\n")
    assert fakes.decide(spoof.CHECK, facts, settings.checks["spoof"], fakes.services(SITE)) is None
