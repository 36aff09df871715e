"""The rdns check against a real DNS server: FCrDNS results and their iprev header, the stage each
question is asked at, the require_ptr and dynamic_ip modes, the consumer-line patterns (and the
names they must leave alone), the admin's patterns file and the option errors."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mxguard.checks import rdns
from mxguard.core import config
from mxguard.core.check import Services
from mxguard.core.dns import ConnectionLookups, Resolver
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Envelope, Facts, Stage
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline
from mxguard.core.verdict import Action, Verdict
from mxguard.daemon import trace_fields as headers
from mxguard.mail.address import parse_path
from tests.support.dnsserver import Query as Asked
from tests.support.dnsserver import TestDnsServer

from .fakes import FakeDns, services

ZONE = """
$TTL 300
sender.example.  IN SOA ns.sender.example. hostmaster.sender.example. 1 3600 600 86400 60
isp.example.     IN SOA ns.isp.example. hostmaster.isp.example. 1 3600 600 86400 60
2.0.192.in-addr.arpa.   IN SOA ns.sender.example. hostmaster.sender.example. 1 3600 600 86400 60
113.0.203.in-addr.arpa. IN SOA ns.isp.example. hostmaster.isp.example. 1 3600 600 86400 60

; pass, IPv4 and IPv6
10.2.0.192.in-addr.arpa.  IN PTR  mx.sender.example.
mx.sender.example.        IN A    192.0.2.10
mx.sender.example.        IN AAAA 2001:db8::10
0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR mx.sender.example.
; no PTR: NXDOMAIN for .11, NODATA for .19 (the name exists, with another type)
19.2.0.192.in-addr.arpa.  IN TXT  "no ptr here"
; PTR names that do not confirm: another address, no such name
12.2.0.192.in-addr.arpa.  IN PTR  forged.sender.example.
forged.sender.example.    IN A    192.0.2.99
13.2.0.192.in-addr.arpa.  IN PTR  nowhere.sender.example.
; three names, only the second confirms
14.2.0.192.in-addr.arpa.  IN PTR  a.sender.example.
14.2.0.192.in-addr.arpa.  IN PTR  b.sender.example.
14.2.0.192.in-addr.arpa.  IN PTR  c.sender.example.
a.sender.example.         IN A    192.0.2.99
b.sender.example.         IN A    192.0.2.14
; forward lookups that fail: SERVFAIL, a timeout, and a failure beside a plain non-match
15.2.0.192.in-addr.arpa.  IN PTR  host.servfail.test.
16.2.0.192.in-addr.arpa.  IN PTR  host.timeout.test.
17.2.0.192.in-addr.arpa.  IN PTR  nowhere.sender.example.
17.2.0.192.in-addr.arpa.  IN PTR  host.servfail.test.
; twelve names: only the first ten are examined, and the confirming one is the twelfth
18.2.0.192.in-addr.arpa.  IN PTR  n01.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n02.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n03.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n04.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n05.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n06.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n07.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n08.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n09.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n10.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n11.sender.example.
18.2.0.192.in-addr.arpa.  IN PTR  n12.sender.example.
n12.sender.example.       IN A    192.0.2.18
; consumer lines
9.113.0.203.in-addr.arpa. IN PTR  203-0-113-9.pool.isp.example.
203-0-113-9.pool.isp.example. IN A 203.0.113.9
20.113.0.203.in-addr.arpa. IN PTR 203-0-113-20.dyn.isp.example.
20.113.0.203.in-addr.arpa. IN PTR shop.sender.example.
203-0-113-20.dyn.isp.example. IN A 203.0.113.20
shop.sender.example.      IN A    203.0.113.20
; a consumer-looking name that does not confirm: require_ptr's business, not dynamic_ip's
21.113.0.203.in-addr.arpa. IN PTR 203-0-113-21.pool.isp.example.
"""

PASS_V4 = ipaddress.ip_address("192.0.2.10")
PASS_V6 = ipaddress.ip_address("2001:db8::10")
CONSUMER = ipaddress.ip_address("203.0.113.9")
SITE = "[milter]\nlocal_domains = example.org\nhostnames = mx.example.org\n"


@pytest.fixture(scope="module")
def server() -> Iterator[TestDnsServer]:
    with TestDnsServer(ZONE) as dns:
        yield dns


@dataclass
class Session:
    """What one SMTP session produced: the verdict at MAIL and the questions of each stage."""

    verdict: Verdict | None
    decision: Verdict | None
    asked: dict[Stage, list[Asked]]


def converse(
    server: TestDnsServer,
    ip: str,
    ini: str = "",
    *,
    auth_user: str = "",
    submission: bool = False,
    trusted: bool = False,
    helo: bool = True,
    nameserver: tuple[str, int] | None = None,
) -> Session:
    """Drive CONNECT, HELO and MAIL through the pipeline with one Services, as the adapter does."""
    settings = config.load("t.ini", text=SITE + ini)
    resolver = Resolver(
        nameservers=(nameserver or ("127.0.0.1", server.port),), timeout=0.3, cache_size=0
    )
    clock = lambda: 1_000_000.0  # noqa: E731
    services = Services(
        site=settings.milter, dns=ConnectionLookups(resolver), clock=clock, notices=Notices(clock)
    )
    pipeline = Pipeline([(rdns.CHECK, settings.checks["rdns"])])
    connection = Connection(
        client_ip=ipaddress.ip_address(ip),
        helo="client.example",
        submission=submission,
        trusted=trusted,
    )
    sender = "<x@sender.example>"
    stages = [
        (Stage.CONNECT, Facts(Stage.CONNECT, connection)),
        (Stage.HELO, Facts(Stage.HELO, connection)),
        (
            Stage.MAIL,
            Facts(
                Stage.MAIL,
                dataclasses.replace(connection, auth_user=auth_user),
                Envelope(sender, parse_path(sender)),
            ),
        ),
    ]
    asked: dict[Stage, list[Asked]] = {}
    try:
        for stage, facts in stages:
            if stage is Stage.HELO and not helo:
                continue
            server.reset_queries()
            result = pipeline.run(stage, facts, services)
            asked[stage] = server.queries
    finally:
        resolver.close()
    assert len(result.verdicts) <= 1
    return Session(result.verdicts[0] if result.verdicts else None, result.decision, asked)


def reply(verdict: Verdict | None) -> tuple[str, str] | None:
    if verdict is None or verdict.reply is None:
        return None
    return verdict.reply.smtp_code, verdict.reply.dsn_code


# -- FCrDNS results ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "iprev", "outcome"),
    [
        pytest.param("192.0.2.10", "pass", "rdns.pass", id="pass-v4"),
        pytest.param("2001:db8::10", "pass", "rdns.pass", id="pass-v6"),
        pytest.param("192.0.2.14", "pass", "rdns.pass", id="second-of-three-names-confirms"),
        pytest.param("192.0.2.11", "permerror", "rdns.no-ptr", id="no-ptr-nxdomain"),
        pytest.param("192.0.2.19", "permerror", "rdns.no-ptr", id="no-ptr-nodata"),
        pytest.param("192.0.2.12", "fail", "rdns.unconfirmed", id="ptr-to-another-address"),
        pytest.param("192.0.2.13", "fail", "rdns.unconfirmed", id="ptr-to-missing-name"),
        pytest.param("192.0.2.18", "fail", "rdns.unconfirmed", id="only-ten-names-examined"),
        pytest.param("192.0.2.15", "temperror", "rdns.dns-error", id="forward-servfail"),
        pytest.param("192.0.2.16", "temperror", "rdns.dns-error", id="forward-timeout"),
        pytest.param("192.0.2.17", "temperror", "rdns.dns-error", id="forward-failure-beside-miss"),
    ],
)
def test_iprev_result_by_default(server: TestDnsServer, ip: str, iprev: str, outcome: str) -> None:
    session = converse(server, ip)
    verdict = session.verdict
    assert verdict is not None and verdict.outcome == outcome
    assert session.decision is None  # by default nothing is refused, not even on a DNS failure
    assert verdict.action is (Action.CONTINUE if iprev == "pass" else Action.TAG)
    assert [(a.method, a.result, a.properties) for a in verdict.auth] == [
        ("iprev", iprev, (("policy", "iprev", ip),))
    ]


@pytest.fixture
def black_hole() -> Iterator[tuple[str, int]]:
    """A UDP port on 127.0.0.1 that reads questions and never answers them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


def test_ptr_timeout_is_temperror(server: TestDnsServer, black_hole: tuple[str, int]) -> None:
    session = converse(server, "192.0.2.10", nameserver=black_hole)
    assert session.verdict is not None and session.verdict.outcome == "rdns.dns-error"
    assert session.verdict.action is Action.TAG and session.decision is None
    assert "PTR lookup: timeout" in session.verdict.reason
    assert session.verdict.auth[0].result == "temperror"


def test_ptr_timeout_tempfails_with_require_ptr_reject(
    server: TestDnsServer, black_hole: tuple[str, int]
) -> None:
    session = converse(
        server, "192.0.2.10", "[rdns]\nrequire_ptr = reject\n", nameserver=black_hole
    )
    assert session.decision is session.verdict and session.verdict is not None
    assert session.verdict.action is Action.TEMPFAIL
    assert reply(session.verdict) == ("451", "4.4.3")
    assert session.verdict.text.startswith("rdns: ") and "192.0.2.10" in session.verdict.text
    assert session.verdict.auth[0].result == "temperror"


@pytest.mark.parametrize(
    ("ip", "action", "code"),
    [
        pytest.param("192.0.2.11", Action.REJECT, ("550", "5.7.1"), id="no-ptr"),
        pytest.param("192.0.2.12", Action.REJECT, ("550", "5.7.1"), id="unconfirmed"),
        pytest.param("192.0.2.15", Action.TEMPFAIL, ("451", "4.4.3"), id="forward-servfail"),
        # A name whose lookup failed might have confirmed: 4xx, never 5xx.
        pytest.param("192.0.2.17", Action.TEMPFAIL, ("451", "4.4.3"), id="failure-beside-miss"),
    ],
)
def test_require_ptr_reject(
    server: TestDnsServer, ip: str, action: Action, code: tuple[str, str]
) -> None:
    session = converse(server, ip, "[rdns]\nrequire_ptr = reject\n")
    assert session.decision is not None and session.decision.action is action
    assert reply(session.decision) == code
    assert session.decision.text.startswith(f"rdns: {ip}")


def test_reject_texts_name_the_address_and_the_name(server: TestDnsServer) -> None:
    ini = "[rdns]\nrequire_ptr = reject\n"
    assert converse(server, "192.0.2.11", ini).decision.text == (
        "rdns: 192.0.2.11 has no reverse DNS"
    )
    assert converse(server, "192.0.2.12", ini).decision.text == (
        "rdns: 192.0.2.12's reverse DNS name forged.sender.example does not resolve back to it"
    )


def test_require_ptr_off_only_records_iprev(server: TestDnsServer) -> None:
    verdict = converse(server, "192.0.2.11", "[rdns]\nrequire_ptr = off\n").verdict
    assert verdict is not None and verdict.action is Action.CONTINUE
    assert verdict.outcome == "rdns.no-ptr" and verdict.auth[0].result == "permerror"


def test_monitor_mode_tags_what_it_would_reject(server: TestDnsServer) -> None:
    session = converse(server, "192.0.2.11", "[rdns]\nrequire_ptr = reject\nmode = monitor\n")
    assert session.decision is None and session.verdict is not None
    assert (session.verdict.action, session.verdict.monitored) == (Action.TAG, Action.REJECT)
    assert session.verdict.auth[0].result == "permerror"


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        pytest.param("192.0.2.10", "mx.example.org; iprev=pass policy.iprev=192.0.2.10", id="pass"),
        pytest.param(
            "2001:db8::10", 'mx.example.org; iprev=pass policy.iprev="2001:db8::10"', id="pass-v6"
        ),
        pytest.param("192.0.2.12", "mx.example.org; iprev=fail policy.iprev=192.0.2.12", id="fail"),
        pytest.param(
            "192.0.2.11", "mx.example.org; iprev=permerror policy.iprev=192.0.2.11", id="permerror"
        ),
        pytest.param(
            "192.0.2.15", "mx.example.org; iprev=temperror policy.iprev=192.0.2.15", id="temperror"
        ),
    ],
)
def test_authentication_results_value(server: TestDnsServer, ip: str, expected: str) -> None:
    session = converse(server, ip)
    assert session.verdict is not None
    assert headers.authentication_results("mx.example.org", [session.verdict]) == expected


# -- when each question is asked ---------------------------------------------------------------


def test_ptr_at_connect_forward_at_helo_nothing_at_mail(server: TestDnsServer) -> None:
    session = converse(server, "192.0.2.14")
    assert session.asked[Stage.CONNECT] == [Asked("14.2.0.192.in-addr.arpa.", "PTR")]
    assert sorted(session.asked[Stage.HELO]) == [
        Asked(f"{host}.sender.example.", "A") for host in ("a", "b", "c")
    ]
    assert session.asked[Stage.MAIL] == []


def test_ipv6_client_is_confirmed_with_aaaa(server: TestDnsServer) -> None:
    session = converse(server, "2001:db8::10")
    assert [q.qtype for q in session.asked[Stage.CONNECT]] == ["PTR"]
    assert session.asked[Stage.CONNECT][0].name.endswith(".ip6.arpa.")
    assert session.asked[Stage.HELO] == [Asked("mx.sender.example.", "AAAA")]
    assert session.asked[Stage.MAIL] == []


def test_forward_questions_stop_at_ten_names(server: TestDnsServer) -> None:
    session = converse(server, "192.0.2.18")
    assert len(session.asked[Stage.HELO]) == rdns.MAX_PTR_NAMES
    assert server.count("n12.sender.example", "A") == 0


def test_without_helo_the_forward_questions_are_asked_at_mail(server: TestDnsServer) -> None:
    session = converse(server, "192.0.2.10", helo=False)
    assert session.verdict is not None and session.verdict.outcome == "rdns.pass"
    assert session.asked[Stage.MAIL] == [Asked("mx.sender.example.", "A")]


# -- who is exempt -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"submission": True}, id="submission-listener"),
        pytest.param({"trusted": True}, id="trusted"),
    ],
)
def test_exempt_clients_are_not_even_looked_up(server: TestDnsServer, kwargs: dict) -> None:
    ini = "[rdns]\nrequire_ptr = reject\ndynamic_ip = reject\n"
    session = converse(server, str(CONSUMER), ini, **kwargs)
    assert session.verdict is None and session.decision is None
    assert all(asked == [] for asked in session.asked.values())


def test_authenticated_client_is_exempt(server: TestDnsServer) -> None:
    # SMTP AUTH is known only at MAIL, so the PTR was asked at CONNECT, but nothing is decided.
    ini = "[rdns]\nrequire_ptr = reject\ndynamic_ip = reject\n"
    for ip in (str(CONSUMER), "192.0.2.11"):
        session = converse(server, ip, ini, auth_user="carol@example.org")
        assert session.verdict is None and session.decision is None


def test_client_without_ip_is_left_alone() -> None:
    dns = FakeDns()
    pipeline = Pipeline([(rdns.CHECK, rdns.RdnsSettings(require_ptr="reject"))])
    connection = Connection(client_ip=None)
    for stage in (Stage.CONNECT, Stage.HELO, Stage.MAIL):
        result = pipeline.run(stage, Facts(stage, connection), services(dns=dns))
        assert result.verdicts == ()
    assert dns.asked == []


# -- consumer lines ----------------------------------------------------------------------------


def test_consumer_line_is_tagged_by_default(server: TestDnsServer) -> None:
    session = converse(server, str(CONSUMER))
    verdict = session.verdict
    assert verdict is not None and verdict.outcome == "rdns.dynamic"
    assert verdict.action is Action.TAG and session.decision is None
    assert "203-0-113-9.pool.isp.example" in verdict.reason
    assert verdict.auth[0].result == "pass"


def test_consumer_line_reject_points_to_port_587(server: TestDnsServer) -> None:
    session = converse(server, str(CONSUMER), "[rdns]\ndynamic_ip = reject\n")
    decision = session.decision
    assert decision is not None and decision.action is Action.REJECT
    assert decision.outcome == "rdns.dynamic" and reply(decision) == ("550", "5.7.1")
    assert decision.text == (
        "rdns: 203.0.113.9 (203-0-113-9.pool.isp.example) looks like a consumer connection; "
        "send mail through your provider's authenticated submission service (port 587)"
    )
    assert decision.auth[0].result == "pass"


def test_dynamic_ip_off_passes_a_consumer_line(server: TestDnsServer) -> None:
    verdict = converse(server, str(CONSUMER), "[rdns]\ndynamic_ip = off\n").verdict
    assert verdict is not None and verdict.outcome == "rdns.pass"


def test_one_confirmed_ordinary_name_clears_the_client(server: TestDnsServer) -> None:
    verdict = converse(server, "203.0.113.20", "[rdns]\ndynamic_ip = reject\n").verdict
    assert verdict is not None and verdict.outcome == "rdns.pass"
    assert "shop.sender.example" in verdict.reason


def test_only_a_confirmed_name_is_judged_a_consumer_line(server: TestDnsServer) -> None:
    verdict = converse(server, "203.0.113.21", "[rdns]\ndynamic_ip = reject\n").verdict
    assert verdict is not None and verdict.outcome == "rdns.unconfirmed"
    assert verdict.action is Action.TAG


@pytest.fixture(scope="module")
def shipped() -> rdns.Patterns:
    return rdns.prepare(rdns.RdnsSettings()).patterns


@pytest.mark.parametrize(
    ("ip", "name", "evidence"),
    [
        # the whole address, embedded
        pytest.param("203.0.113.9", "203-0-113-9.pool.isp.example", "address", id="dashes"),
        pytest.param("203.0.113.9", "c-203-0-113-9.hsd1.ca.isp.example", "address", id="prefix"),
        pytest.param("203.0.113.9", "203.0.113.9.broadband.isp.example", "address", id="dots"),
        pytest.param("203.0.113.9", "ip203_0_113_9.isp.example", "address", id="underscores"),
        pytest.param("203.0.113.9", "d4-9-113-0-203.isp.example", "address", id="reversed"),
        pytest.param("203.0.113.9", "9.113.0.203.cloud.example", "address", id="reversed-dots"),
        pytest.param("203.0.113.9", "h203000113009.isp.example", "address", id="zero-padded"),
        pytest.param("203.0.113.9", "009113000203.isp.example", "address", id="padded-reversed"),
        pytest.param("203.0.113.9", "203-000-113-009.isp.example", "address", id="padded-dashes"),
        pytest.param("203.0.113.9", "cb007109.isp.example", "address", id="hex"),
        pytest.param("203.0.113.9", "pcb007109.dip0.isp.example", "address", id="hex-prefixed"),
        pytest.param("203.0.113.9", "CB007109.ISP.EXAMPLE", "address", id="upper-case"),
        pytest.param("2001:db8::9", "2001-db8--9.v6.isp.example", "address", id="v6-compressed"),
        pytest.param("2001:db8::9", "2001-db8-0-0-0-0-0-9.isp.example", "address", id="v6-hextets"),
        pytest.param(
            "2001:db8::9", "20010db8000000000000000000000009.isp.example", "address", id="v6-hex"
        ),
        # tokens (the address is not in these names)
        pytest.param("198.51.100.7", "dsl-77-1.isp.example", "pattern", id="dsl"),
        pytest.param("198.51.100.7", "adsl2-77.isp.example", "pattern", id="adsl-digit"),
        pytest.param("198.51.100.7", "host77.vdsl.region.isp.example", "pattern", id="vdsl"),
        pytest.param("198.51.100.7", "dyn-77.isp.example", "pattern", id="dyn"),
        pytest.param("198.51.100.7", "host77.dynamic.isp.example", "pattern", id="dynamic"),
        pytest.param("198.51.100.7", "dynip77.isp.example", "pattern", id="dynip"),
        pytest.param("198.51.100.7", "dhcp-77-12.isp.example", "pattern", id="dhcp"),
        pytest.param("198.51.100.7", "pool-77-1.nycmny.isp.example", "pattern", id="pool"),
        pytest.param("198.51.100.7", "ippool7.isp.example", "pattern", id="ippool"),
        pytest.param("198.51.100.7", "cable-77.isp.example", "pattern", id="cable"),
        pytest.param("198.51.100.7", "cablemodem77.isp.example", "pattern", id="cablemodem"),
        pytest.param("198.51.100.7", "ppp77.isp.example", "pattern", id="ppp"),
        pytest.param("198.51.100.7", "pppoe-77.isp.example", "pattern", id="pppoe"),
        pytest.param("198.51.100.7", "dialup77.isp.example", "pattern", id="dialup"),
        pytest.param("198.51.100.7", "dial-in-77.isp.example", "pattern", id="dial"),
        pytest.param("198.51.100.7", "customer-77.isp.example", "pattern", id="customer"),
        pytest.param("198.51.100.7", "cpc7-town1-cust77.1-2.isp.example", "pattern", id="cust"),
        pytest.param("198.51.100.7", "cpe-77-1.tx.res.isp.example", "pattern", id="cpe"),
        pytest.param("198.51.100.7", "host_77.DSL.isp.example", "pattern", id="token-upper"),
    ],
)
def test_consumer_line_names(shipped: rdns.Patterns, ip: str, name: str, evidence: str) -> None:
    found = rdns.consumer_evidence(name, ipaddress.ip_address(ip), shipped)
    assert found.startswith("the name embeds" if evidence == "address" else "pattern ")


@pytest.mark.parametrize(
    ("ip", "name"),
    [
        pytest.param("203.0.113.9", "mail.example.com", id="plain"),
        pytest.param("203.0.113.9", "mx1.poolside.example", id="word-in-domain"),
        pytest.param("203.0.113.9", "poolside-gw.corp.example", id="poolside"),
        pytest.param("203.0.113.9", "dynamo-gw.example.com", id="dynamo"),
        pytest.param("203.0.113.9", "smtp-out.dynamo.example", id="dynamo-domain"),
        pytest.param("203.0.113.9", "gw.cablecar.example", id="cablecar"),
        pytest.param("203.0.113.9", "customers-portal.example.com", id="customers"),
        pytest.param("203.0.113.9", "dialog-gw.example.net", id="dialog"),
        pytest.param("203.0.113.9", "pppd-gw.example.net", id="pppd"),
        pytest.param("203.0.113.9", "gw.dsl.example", id="token-only-in-domain"),
        pytest.param("203.0.113.9", "203-0-113-9.example", id="no-host-part"),
        pytest.param("203.0.113.9", "host-113-9.isp.example", id="two-octets"),
        pytest.param("203.0.113.9", "gw-0-113-9.isp.example", id="three-octets"),
        pytest.param("203.0.113.9", "1203-0-113-9.isp.example", id="longer-first-number"),
        pytest.param("203.0.113.9", "203-0-113-90.isp.example", id="longer-last-number"),
        pytest.param("203.0.113.9", "198-51-100-7.isp.example", id="another-address"),
        pytest.param("203.0.113.9", "static-203-0-113-9.biz.isp.example", id="static-line"),
        pytest.param("203.0.113.9", "smtp.dsl.isp.example", id="isp-own-mail-server"),
        pytest.param("209.85.208.41", "mail-ed1-f41.google.com", id="google"),
        pytest.param(
            "40.107.94.41", "mail-dm6nam10on2041.outbound.protection.outlook.com", id="outlook"
        ),
        pytest.param(
            "40.92.66.55",
            "mail-oln040092066055.outbound.protection.outlook.com",
            id="outlook-consumer-padded",
        ),
        pytest.param("66.163.191.153", "sonic310-21.consmr.mail.ne1.yahoo.com", id="yahoo"),
        pytest.param("54.240.8.35", "a8-35.smtp-out.amazonses.com", id="amazon-ses"),
        pytest.param("159.135.228.5", "m228-5.mailgun.net", id="mailgun"),
        pytest.param("198.2.180.1", "mail180-1.suw21.mandrillapp.com", id="mandrill"),
        pytest.param("66.220.155.178", "66-220-155-178.mail-mail.facebook.com", id="facebook"),
        pytest.param("103.168.172.144", "out1-smtp.messagingengine.com", id="fastmail"),
        pytest.param("185.70.42.16", "mail-4316.protonmail.ch", id="protonmail"),
        pytest.param("136.143.188.12", "sender4-op-o12.zoho.com", id="zoho"),
        pytest.param("96.114.154.168", "resqmta-po-01v.sys.comcast.net", id="comcast-outbound"),
        pytest.param("212.227.15.18", "mout.gmx.net", id="gmx"),
        pytest.param("13.110.74.206", "smtp07-ia4-sp3.mta.salesforce.com", id="salesforce"),
        pytest.param("17.58.63.176", "ms11p00im-qufo17281401.me.com", id="icloud"),
        pytest.param("2a00:1450:4864:20::42e", "mail-wr1-x42e.google.com", id="google-v6"),
    ],
)
def test_ordinary_names_are_not_consumer_lines(shipped: rdns.Patterns, ip: str, name: str) -> None:
    assert rdns.consumer_evidence(name, ipaddress.ip_address(ip), shipped) == ""


# -- the patterns files ------------------------------------------------------------------------


def test_shipped_patterns_load_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mxguard.rdns"):
        patterns = rdns.prepare(rdns.RdnsSettings()).patterns
    assert caplog.records == []
    assert len(patterns.dynamic) >= 9 and len(patterns.exceptions) >= 2
    assert all("dynamic-patterns.txt:" in p.source for p in patterns.dynamic)


def test_admin_file_extends_the_shipped_list(tmp_path: Path) -> None:
    extra = tmp_path / "extra-patterns.txt"
    extra.write_text(
        "# mobile data\n(?<![a-z])gprs(?![a-z])\n\n!^.*\\.friendly-isp\\.example$\n",
        encoding="utf-8",
    )
    settings = rdns.RdnsSettings(patterns_file=str(extra))
    patterns = rdns.prepare(settings).patterns
    ip = ipaddress.ip_address("198.51.100.7")
    assert rdns.consumer_evidence("gprs-7.mobile.example", ip, patterns) == f"pattern {extra}:2"
    assert rdns.consumer_evidence("dsl-7.friendly-isp.example", ip, patterns) == ""
    # the shipped patterns still apply
    assert rdns.consumer_evidence("dsl-7.isp.example", ip, patterns).startswith("pattern ")
    shipped_only = rdns.prepare(rdns.RdnsSettings()).patterns
    assert rdns.consumer_evidence("gprs-7.mobile.example", ip, shipped_only) == ""


def test_broken_lines_are_reported_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = tmp_path / "extra-patterns.txt"
    extra.write_text(
        "(?<![a-z])gprs(?![a-z])\n# fine\n(?<![a-z])lte(\ndsl|\n!\n(?<![a-z])wimax(?![a-z])\n",
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="mxguard.rdns"):
        patterns = rdns.prepare(rdns.RdnsSettings(patterns_file=str(extra))).patterns
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{extra}:3: not a valid regular expression" in m for m in messages)
    assert any(f"{extra}:4: matches an empty name" in m for m in messages)
    assert any(f"{extra}:5: matches an empty name" in m for m in messages)
    assert len(messages) == 3
    sources = [p.source for p in patterns.dynamic + patterns.exceptions]
    assert f"{extra}:1" in sources and f"{extra}:6" in sources
    assert not any(s.startswith(f"{extra}:") and s[-1] in "345" for s in sources)


def test_missing_admin_file_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "nope.txt"
    with caplog.at_level(logging.WARNING, logger="mxguard.rdns"):
        patterns = rdns.prepare(rdns.RdnsSettings(patterns_file=str(missing))).patterns
    assert any(str(missing) in r.getMessage() for r in caplog.records)
    assert len(patterns.dynamic) >= 9  # the shipped list is still there


def test_parse_patterns_is_pure() -> None:
    patterns, problems = rdns.parse_patterns("  # c\n\n dsl \n! static\n[\n", "f")
    assert [p.source for p in patterns.dynamic] == ["f:3"]
    assert [p.source for p in patterns.exceptions] == ["f:4"]
    assert len(problems) == 1 and problems[0].startswith("f:5: ")


# -- configuration -----------------------------------------------------------------------------


def test_defaults() -> None:
    settings = config.load("t.ini", text="").checks["rdns"]
    assert (settings.require_ptr, settings.dynamic_ip, settings.patterns_file) == ("tag", "tag", "")


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        pytest.param(
            "[rdns]\nrequire_ptr = maybe\n",
            "t.ini: [rdns] require_ptr: expected one of off, tag, reject, got 'maybe'",
            id="require-ptr",
        ),
        pytest.param(
            "[rdns]\ndynamic_ip = yes\n",
            "t.ini: [rdns] dynamic_ip: expected one of off, tag, reject, got 'yes'",
            id="dynamic-ip",
        ),
        pytest.param(
            "[rdns]\npattern_file = /etc/x\n",
            "t.ini: [rdns] pattern_file: unknown option; did you mean 'patterns_file'?",
            id="misspelt-option",
        ),
    ],
)
def test_bad_options_name_file_section_and_option(ini: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        config.load("t.ini", text=ini)
    assert message in str(error.value)
