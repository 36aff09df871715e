"""The sender check: MAIL FROM syntax and whether the sender domain can receive replies."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Iterable, Iterator

import pytest

from mxguard.checks import sender
from mxguard.checks.sender import Reach, reach
from mxguard.core import config
from mxguard.core.check import DnsView, Services
from mxguard.core.dns import ConnectionLookups, DnsResult, Found, NotFound, Query, Resolver, Unknown
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Envelope, Facts, Stage
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline, StageResult
from mxguard.core.verdict import Action
from mxguard.mail.address import parse_path
from tests.support.dnsserver import TestDnsServer

ZONE = """
$TTL 300
example.            IN SOA ns.example. hostmaster.example. 1 3600 600 86400 60
mx.example.         IN MX   10 mail.mx.example.
mail.mx.example.    IN A    192.0.2.25
mxonly.example.     IN MX   10 mail.mx.example.
aonly.example.      IN A    192.0.2.1
aaaaonly.example.   IN AAAA 2001:db8::1
nullmx.example.     IN MX   0 .
nullmx.example.     IN A    192.0.2.2
nullmx10.example.   IN MX   10 .
mixedmx.example.    IN MX   0 .
mixedmx.example.    IN MX   10 mail.mx.example.
txtonly.example.    IN TXT  "v=spf1 -all"
host.ent.example.   IN A    192.0.2.3
alias.example.      IN CNAME aonly.example.
"""

OUTSIDER = ipaddress.ip_address("203.0.113.9")


@pytest.fixture(scope="module")
def server() -> Iterator[TestDnsServer]:
    with TestDnsServer(ZONE) as dns:
        yield dns


@pytest.fixture
def resolver(server: TestDnsServer) -> Iterator[Resolver]:
    server.reset_queries()
    resolver = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=0.3)
    yield resolver
    resolver.close()


class FailingTypes:
    """The real DNS view, except that questions of ``types`` cannot be answered (SERVFAIL).

    The test server fails whole names, not single types; this reaches the partial failures."""

    def __init__(self, view: DnsView, types: Iterable[str]) -> None:
        self._view = view
        self._types = set(types)

    def lookup(self, name: str, rdtype: str) -> DnsResult:
        if rdtype in self._types:
            return Unknown("servfail")
        return self._view.lookup(name, rdtype)

    def lookup_all(self, queries: Iterable[Query]) -> dict[Query, DnsResult]:
        queries = list(queries)
        real = self._view.lookup_all(q for q in queries if q.rdtype not in self._types)
        return {q: real.get(q, Unknown("servfail")) for q in queries}


def mail(
    resolver: Resolver,
    raw: str,
    options: str = "",
    failing: Iterable[str] = (),
    **connection: object,
) -> StageResult:
    """Run MAIL FROM ``raw`` (parsed as the adapter parses it) through a sender-only pipeline."""
    settings = config.load("t.ini", text="[sender]\n" + options)
    view: DnsView = ConnectionLookups(resolver)
    if failing:
        view = FailingTypes(view, failing)
    services = Services(
        site=settings.milter, dns=view, clock=lambda: 0.0, notices=Notices(lambda: 0.0)
    )
    path = parse_path(raw, allow_null=True, allow_bare_postmaster=False)
    facts = Facts(Stage.MAIL, Connection(client_ip=OUTSIDER, **connection), Envelope(raw, path))
    return Pipeline([(sender.CHECK, settings.checks["sender"])]).run(Stage.MAIL, facts, services)


def reply(result: StageResult) -> tuple[str, str, str] | None:
    decision = result.decision
    if decision is None:
        return None
    return decision.reply.smtp_code, decision.reply.dsn_code, decision.outcome


# --------------------------------------------------------------------------- real DNS


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("<a@mx.example>", id="mx"),
        pytest.param("<a@mxonly.example>", id="mx-only"),
        pytest.param("<a@aonly.example>", id="a-only"),
        pytest.param("<a@aaaaonly.example>", id="aaaa-only"),
        pytest.param("<a@mixedmx.example>", id="null-and-real-mx"),
        pytest.param("<a@alias.example>", id="cname-to-a"),
        pytest.param("<a@MX.Example>", id="upper-case"),
        pytest.param("a@mx.example", id="no-brackets"),
        pytest.param("<>", id="null-sender"),
        pytest.param("<a@[192.0.2.1]>", id="ipv4-literal"),
        pytest.param("<a@[IPv6:2001:db8::1]>", id="ipv6-literal"),
    ],
)
def test_domains_that_can_receive_pass(resolver: Resolver, raw: str) -> None:
    result = mail(resolver, raw)
    assert result.decision is None and result.verdicts == ()


@pytest.mark.parametrize(
    ("raw", "outcome", "text"),
    [
        pytest.param(
            "<a@nosuch.example>",
            "sender.nxdomain",
            "sender: sender domain nosuch.example does not exist",
            id="nxdomain",
        ),
        pytest.param(
            "<a@no-such-tld>",
            "sender.nxdomain",
            "sender: sender domain no-such-tld does not exist",
            id="single-label",
        ),
        pytest.param(
            "<a@txtonly.example>",
            "sender.no-address",
            "sender: sender domain txtonly.example has no MX, A or AAAA record",
            id="no-mx-a-aaaa",
        ),
        pytest.param(
            "<a@ent.example>",
            "sender.no-address",
            "sender: sender domain ent.example has no MX, A or AAAA record",
            id="empty-non-terminal",
        ),
        pytest.param(
            "<a@nullmx.example>",
            "sender.null-mx",
            "sender: sender domain nullmx.example accepts no mail (null MX)",
            id="null-mx-despite-a",
        ),
        pytest.param(
            "<a@nullmx10.example>",
            "sender.null-mx",
            "sender: sender domain nullmx10.example accepts no mail (null MX)",
            id="root-mx-preference-10",
        ),
    ],
)
def test_domains_that_cannot_receive_are_refused(
    resolver: Resolver, raw: str, outcome: str, text: str
) -> None:
    result = mail(resolver, raw)
    assert reply(result) == ("550", "5.1.8", outcome)
    assert result.decision.text == text


@pytest.mark.parametrize(
    ("raw", "options", "expected"),
    [
        pytest.param("<a@aonly.example>", "require_mx = yes", "sender.no-address", id="a-only"),
        pytest.param(
            "<a@aaaaonly.example>", "require_mx = yes", "sender.no-address", id="aaaa-only"
        ),
        pytest.param("<a@mxonly.example>", "require_mx = yes", None, id="mx-only"),
        pytest.param("<a@nosuch.example>", "require_mx = yes", "sender.nxdomain", id="nxdomain"),
        pytest.param("<a@nullmx.example>", "require_mx = yes", "sender.null-mx", id="null-mx"),
    ],
)
def test_require_mx(resolver: Resolver, raw: str, options: str, expected: str | None) -> None:
    result = mail(resolver, raw, options)
    assert (result.decision.outcome if result.decision else None) == expected
    if expected == "sender.no-address":
        assert result.decision.text.endswith("has no MX record")


def test_require_mx_does_not_ask_for_addresses(resolver: Resolver, server: TestDnsServer) -> None:
    mail(resolver, "<a@mxonly.example>", "require_mx = yes")
    assert server.count("mxonly.example", "MX") == 1
    assert server.count("mxonly.example", "A") == server.count("mxonly.example", "AAAA") == 0


def test_mx_a_and_aaaa_are_asked_in_parallel(server: TestDnsServer) -> None:
    server.delay = 0.2
    try:
        slow = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=2.0, cache_size=0)
        started = time.monotonic()
        mail(slow, "<a@txtonly.example>")
        elapsed = time.monotonic() - started
        slow.close()
    finally:
        server.delay = 0.0
    assert elapsed < 0.5, f"three lookups answered after 0.2 s each took {elapsed:.2f} s"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("<a@servfail.test>", id="servfail"),
        pytest.param("<a@host.timeout.test>", id="timeout"),
    ],
)
def test_dns_failure_of_every_question_tempfails(resolver: Resolver, raw: str) -> None:
    result = mail(resolver, raw)
    assert reply(result) == ("451", "4.4.3", "sender.dns-error")
    assert result.decision.text.startswith("sender: cannot look up sender domain ")
    assert "MX " in result.decision.text


@pytest.mark.parametrize(
    ("raw", "failing", "options", "expected"),
    [
        # An answer that is enough on its own: the failed lookups cannot change it.
        pytest.param("<a@aonly.example>", ["MX"], "", None, id="mx-fails-a-found"),
        pytest.param("<a@aaaaonly.example>", ["MX", "A"], "", None, id="mx-a-fail-aaaa-found"),
        pytest.param("<a@mxonly.example>", ["A", "AAAA"], "", None, id="mx-found-a-fail"),
        pytest.param(
            "<a@nullmx.example>", ["A", "AAAA"], "", "sender.null-mx", id="null-mx-a-fail"
        ),
        pytest.param(
            "<a@nosuch.example>", ["A", "AAAA"], "", "sender.nxdomain", id="mx-nxdomain-a-fail"
        ),
        pytest.param("<a@nosuch.example>", ["MX"], "", "sender.nxdomain", id="a-nxdomain-mx-fail"),
        pytest.param(
            "<a@txtonly.example>",
            ["A", "AAAA"],
            "require_mx = yes",
            "sender.no-address",
            id="require-mx-no-mx-a-fail",
        ),
        # The failed lookup might have found what lets the domain receive.
        pytest.param("<a@txtonly.example>", ["MX"], "", "sender.dns-error", id="mx-fails"),
        pytest.param(
            "<a@txtonly.example>", ["A", "AAAA"], "", "sender.dns-error", id="a-aaaa-fail"
        ),
        pytest.param("<a@txtonly.example>", ["AAAA"], "", "sender.dns-error", id="aaaa-fails"),
        pytest.param(
            "<a@txtonly.example>", ["MX"], "require_mx = yes", "sender.dns-error", id="mx-only"
        ),
    ],
)
def test_dns_failure_tempfails_only_when_it_changes_the_answer(
    resolver: Resolver, raw: str, failing: list[str], options: str, expected: str | None
) -> None:
    result = mail(resolver, raw, options, failing)
    assert (result.decision.outcome if result.decision else None) == expected
    if expected == "sender.dns-error":
        assert reply(result)[:2] == ("451", "4.4.3")


# --------------------------------------------------------------------------- syntax

_RNG = random.Random(7505)
GARBAGE = "".join(chr(_RNG.randrange(1, 0x2FF)) for _ in range(1024))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("<a\x00b@mx.example>", id="nul-in-local-part"),
        pytest.param("<a@mx.example\x00>", id="nul-in-domain"),
        pytest.param("\x00", id="nul-only"),
        pytest.param(GARBAGE, id="1k-garbage"),
        pytest.param("<" + "x" * 1022 + ">", id="1k-local-part"),
        pytest.param("<a@" + "b" * 1020 + ">", id="1k-domain"),
        pytest.param("<postmaster>", id="bare-postmaster"),
        pytest.param("<a@>", id="empty-domain"),
        pytest.param("<@mx.example>", id="empty-local-part"),
        pytest.param("<a@b@mx.example>", id="two-at"),
        pytest.param("<a..b@mx.example>", id="double-dot"),
        pytest.param("<a@-mx.example>", id="leading-hyphen"),
        pytest.param("<a@mx..example>", id="empty-label"),
        pytest.param("<a b@mx.example>", id="space"),
        pytest.param("<a@mx.example", id="unbalanced"),
        pytest.param("<a@[300.1.1.1]>", id="bad-literal"),
        pytest.param("<a\r\nRCPT TO:<x@y.example>@mx.example>", id="crlf-injection"),
        pytest.param("", id="empty"),
    ],
)
def test_malformed_mail_from_is_501_without_dns(
    resolver: Resolver, server: TestDnsServer, raw: str
) -> None:
    result = mail(resolver, raw)
    assert reply(result) == ("501", "5.1.7", "sender.syntax")
    assert result.decision.text.startswith("sender: bad sender address syntax (")
    assert result.decision.text.isprintable() and len(result.decision.text) < 200
    assert server.queries == []


# --------------------------------------------------------------------------- exemptions, modes


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param({"trusted": True}, id="trusted"),
        pytest.param({"auth_user": "carol@example.org"}, id="authenticated"),
        pytest.param({"auth_user": "carol", "submission": True}, id="submission-auth"),
    ],
)
@pytest.mark.parametrize("raw", ["<a@nosuch.example>", "<a\x00b@mx.example>"])
def test_our_own_clients_are_exempt(
    resolver: Resolver, server: TestDnsServer, connection: dict, raw: str
) -> None:
    result = mail(resolver, raw, **connection)
    assert result.decision is None and result.verdicts == ()
    assert server.queries == []


@pytest.mark.parametrize("raw", ["<>", "<a@[192.0.2.1]>"])
def test_null_sender_and_literals_cause_no_lookups(
    resolver: Resolver, server: TestDnsServer, raw: str
) -> None:
    mail(resolver, raw)
    assert server.queries == []


def test_monitor_mode_tags(resolver: Resolver) -> None:
    result = mail(resolver, "<a@nosuch.example>", "mode = monitor")
    assert result.decision is None
    assert result.verdicts[0].outcome == "sender.nxdomain"
    assert result.verdicts[0].monitored is Action.REJECT


def test_disabled_check_is_not_run() -> None:
    settings = config.load("t.ini", text="[sender]\nenabled = no\n")
    assert "sender" not in [check.name for check, _ in settings.ordered_checks()]


def test_bad_option_names_file_section_and_option() -> None:
    with pytest.raises(ConfigError, match=r"t\.ini: \[sender\] require_mx: expected yes/no"):
        config.load("t.ini", text="[sender]\nrequire_mx = perhaps\n")


# --------------------------------------------------------------------------- the decision table

MX = Found(((10, "mail.example"),), 300)
NULL_MX = Found(((0, "."),), 300)
ADDRESS = Found(("192.0.2.1",), 300)
NODATA = NotFound(nxdomain=False)
NXDOMAIN = NotFound(nxdomain=True)
FAILED = Unknown("timeout")


@pytest.mark.parametrize(
    ("mx", "a", "aaaa", "require_mx", "expected"),
    [
        pytest.param(MX, FAILED, FAILED, False, Reach.RECEIVES, id="mx"),
        pytest.param(NULL_MX, ADDRESS, ADDRESS, False, Reach.NULL_MX, id="null-mx"),
        pytest.param(NODATA, ADDRESS, NODATA, False, Reach.RECEIVES, id="a"),
        pytest.param(FAILED, NODATA, ADDRESS, False, Reach.RECEIVES, id="aaaa-mx-failed"),
        pytest.param(NODATA, ADDRESS, ADDRESS, True, Reach.NO_ADDRESS, id="a-require-mx"),
        pytest.param(NXDOMAIN, NXDOMAIN, NXDOMAIN, False, Reach.NXDOMAIN, id="nxdomain"),
        pytest.param(NXDOMAIN, FAILED, FAILED, False, Reach.NXDOMAIN, id="nxdomain-mx-only"),
        pytest.param(FAILED, NXDOMAIN, FAILED, False, Reach.NXDOMAIN, id="nxdomain-a-only"),
        pytest.param(NODATA, NODATA, NODATA, False, Reach.NO_ADDRESS, id="nodata"),
        pytest.param(FAILED, NODATA, NODATA, False, Reach.UNKNOWN, id="mx-failed"),
        pytest.param(NODATA, FAILED, NODATA, False, Reach.UNKNOWN, id="a-failed"),
        pytest.param(NODATA, FAILED, FAILED, True, Reach.NO_ADDRESS, id="a-failed-require-mx"),
        pytest.param(FAILED, NODATA, NODATA, True, Reach.UNKNOWN, id="mx-failed-require-mx"),
    ],
)
def test_reach(mx, a, aaaa, require_mx: bool, expected: Reach) -> None:
    assert reach(mx, a, aaaa, require_mx) is expected


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        pytest.param(((0, "."),), True, id="rfc7505"),
        pytest.param(((0, ""),), True, id="root-without-dot"),
        pytest.param(((10, "."),), True, id="root-other-preference"),
        pytest.param(((0, "."), (10, "mx.example")), False, id="with-real-exchange"),
        pytest.param(((0, "mx.example"),), False, id="ordinary"),
        pytest.param((), False, id="empty"),
    ],
)
def test_null_mx(records: tuple, expected: bool) -> None:
    assert sender.is_null_mx(records) is expected
