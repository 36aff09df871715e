"""The DNSBL check against a real DNS server: query names, scoring, error codes, timeouts,
exemptions and the stage of the refusal."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mxguard.checks import dnsbl
from mxguard.core import config
from mxguard.core.check import Services
from mxguard.core.dns import ConnectionLookups, Resolver
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Envelope, Facts, Recipient, Stage
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline
from mxguard.core.verdict import Action
from mxguard.mail import listing
from mxguard.mail.address import parse_path
from tests.support.dnsserver import TestDnsServer

from .fakes import FakeClock

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "dnsbl" / "dnsbl_fixtures.yml"

ZONE = """
$TTL 300
dnsbl.example.        IN SOA ns.dnsbl.example. hostmaster.dnsbl.example. 1 3600 600 86400 60
2.0.0.127.dnsbl.example.  IN A 127.0.0.2
2.0.0.127.dnsbl.example.  IN TXT "listed, see https://dnsbl.example/q?127.0.0.2"
9.113.0.203.dnsbl.example. IN A 127.0.0.4
2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.dnsbl.example. IN A 127.0.0.2
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.dnsbl.example. IN A 127.0.0.3
weak.example.         IN SOA ns.weak.example. hostmaster.weak.example. 1 3600 600 86400 60
9.113.0.203.weak.example. IN A 127.0.0.2
zen.example.          IN SOA ns.zen.example. hostmaster.zen.example. 1 3600 600 86400 60
9.113.0.203.zen.example.  IN A 127.0.0.4
9.113.0.203.zen.example.  IN A 127.0.0.10
10.113.0.203.zen.example. IN A 127.0.0.4
refusing.example.     IN SOA ns.refusing.example. hostmaster.refusing.example. 1 3600 600 86400 60
9.113.0.203.refusing.example. IN A 127.255.255.254
wild.example.         IN SOA ns.wild.example. hostmaster.wild.example. 1 3600 600 86400 60
9.113.0.203.wild.example. IN A 192.0.2.1
"""

LISTED = ipaddress.ip_address("203.0.113.9")
CLEAN = ipaddress.ip_address("198.51.100.7")


@pytest.fixture(scope="module")
def server() -> Iterator[TestDnsServer]:
    with TestDnsServer(ZONE) as dns:
        yield dns


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def resolver(server: TestDnsServer) -> Iterator[Resolver]:
    server.reset_queries()
    resolver = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=0.5, cache_size=1000)
    yield resolver
    resolver.close()


def converse(
    resolver: Resolver,
    options: str,
    ip=LISTED,
    clock: FakeClock | None = None,
    notices: Notices | None = None,
    **connection: object,
) -> dict[Stage, object]:
    """Run connect, helo, mail and rcpt through a pipeline with only the dnsbl check."""
    settings = config.load("t.ini", text="[dnsbl]\n" + options)
    clock = clock or FakeClock()
    services = Services(
        site=settings.milter,
        dns=ConnectionLookups(resolver),
        clock=clock,
        notices=notices or Notices(clock),
    )
    pipeline = Pipeline([(dnsbl.CHECK, settings.checks["dnsbl"])])
    conn = Connection(client_ip=ip, **connection)
    envelope = Envelope("<a@sender.example>", parse_path("<a@sender.example>"))
    rcpt = Recipient("<alice@example.test>", parse_path("<alice@example.test>"))
    stages = {
        Stage.CONNECT: Facts(Stage.CONNECT, conn),
        Stage.HELO: Facts(Stage.HELO, conn),
        Stage.MAIL: Facts(Stage.MAIL, conn, envelope),
        Stage.RCPT: Facts(Stage.RCPT, conn, envelope, rcpt),
    }
    return {stage: pipeline.run(stage, facts, services) for stage, facts in stages.items()}


def test_query_names_follow_rfc5782_fixtures() -> None:

    entries = yaml.safe_load(FIXTURES.read_text())["rfc5782_test_entries"]
    assert (
        listing.ip_query_name(ipaddress.ip_address("127.0.0.2"), "dnsbl.example")
        == (entries["ipv4_listed"]["query"])
    )
    assert (
        listing.ip_query_name(ipaddress.ip_address("::ffff:7f00:2"), "dnsbl.example")
        == (entries["ipv6_listed"]["query"])
    )
    assert (
        listing.ip_query_name(ipaddress.ip_address("::ffff:7f00:1"), "dnsbl.example")
        == (entries["ipv6_not_listed"]["query"])
    )


def test_listed_client_is_refused_at_the_first_rcpt_with_the_zone_text(resolver) -> None:
    results = converse(resolver, "zones = dnsbl.example=1", ip=ipaddress.ip_address("127.0.0.2"))
    assert [results[s].decision for s in (Stage.CONNECT, Stage.HELO, Stage.MAIL)] == [None] * 3
    decision = results[Stage.RCPT].decision
    assert decision.action is Action.REJECT
    assert (decision.reply.smtp_code, decision.reply.dsn_code) == ("550", "5.7.1")
    assert decision.text == (
        "dnsbl: 127.0.0.2 listed by dnsbl.example: listed, see https://dnsbl.example/q?127.0.0.2"
    )


def test_zones_are_asked_at_connect_and_not_again(resolver, server) -> None:
    converse(resolver, "zones = dnsbl.example, weak.example, zen.example")
    assert server.count("9.113.0.203.dnsbl.example", "A") == 1
    assert server.count("9.113.0.203.weak.example", "A") == 1
    assert server.count("9.113.0.203.zen.example", "A") == 1


@pytest.mark.parametrize(
    ("zones", "threshold", "outcome"),
    [
        pytest.param("weak.example=1", 2, "dnsbl.below-threshold", id="below"),
        pytest.param("weak.example=1, dnsbl.example=1", 2, "dnsbl.listed", id="sum-reaches"),
        pytest.param("weak.example=3", 3, "dnsbl.listed", id="one-heavy"),
        pytest.param("zen.example=3:127.0.0.10-127.0.0.11", 3, "dnsbl.listed", id="code-in"),
        pytest.param("zen.example=3:127.0.0.2-127.0.0.3", 3, None, id="code-out"),
        pytest.param("refusing.example=5", 1, None, id="error-code"),
        pytest.param("wild.example=5", 1, None, id="outside-loopback"),
        pytest.param("clean.example=5", 1, None, id="nxdomain-zone"),
    ],
)
def test_scoring(resolver, zones: str, threshold: int, outcome: str | None) -> None:
    result = converse(resolver, f"zones = {zones}\nthreshold = {threshold}")[Stage.RCPT]
    outcomes = [v.outcome for v in result.verdicts]
    assert outcomes == ([outcome] if outcome else [])


def test_code_restriction_ignores_other_codes_of_the_same_zone(resolver) -> None:
    ip = ipaddress.ip_address("203.0.113.10")  # answers only 127.0.0.4
    result = converse(resolver, "zones = zen.example=3:127.0.0.10-127.0.0.11\nthreshold = 3", ip)
    assert result[Stage.RCPT].verdicts == ()


def test_unlisted_client_passes(resolver) -> None:
    result = converse(resolver, "zones = dnsbl.example, weak.example", ip=CLEAN)
    assert result[Stage.RCPT].verdicts == ()


def test_ipv6_client(resolver) -> None:
    ip = ipaddress.ip_address("2001:db8::1")
    decision = converse(resolver, "zones = dnsbl.example", ip=ip)[Stage.RCPT].decision
    assert decision.text == "dnsbl: 2001:db8::1 listed by dnsbl.example"


def test_error_answer_is_logged_once_a_minute_per_zone(resolver, clock, caplog) -> None:
    notices = Notices(clock)
    for _ in range(3):
        converse(resolver, "zones = refusing.example", clock=clock, notices=notices)
    clock.now += 61
    converse(resolver, "zones = refusing.example", clock=clock, notices=notices)
    warnings = [r for r in caplog.records if "refuses queries from this resolver" in r.message]
    assert len(warnings) == 2
    assert "refusing.example" in warnings[0].message


def test_timeout_is_could_not_tell_and_never_refuses(server) -> None:
    slow = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=0.3)
    result = converse(slow, "zones = timeout.test=5, dnsbl.example=1\nthreshold = 5")
    assert result[Stage.RCPT].decision is None
    assert [v.outcome for v in result[Stage.RCPT].verdicts] == ["dnsbl.below-threshold"]
    result = converse(slow, "zones = timeout.test=5")
    assert [v.outcome for v in result[Stage.RCPT].verdicts] == ["dnsbl.could-not-tell"]
    slow.close()


def test_zones_are_asked_in_parallel(server) -> None:
    slow = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=0.5, cache_size=0)
    zones = ", ".join(f"z{i}.timeout.test" for i in range(6))
    started = time.monotonic()
    converse(slow, f"zones = {zones}")
    elapsed = time.monotonic() - started
    assert elapsed < 1.4, f"six zones timing out after 0.5 s took {elapsed:.2f} s"
    slow.close()


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param({"auth_user": "carol@example.test", "submission": True}, id="587-auth"),
        pytest.param({"auth_user": "carol"}, id="25-auth"),
        pytest.param({"trusted": True}, id="trusted"),
    ],
)
def test_our_own_clients_on_listed_ips_pass(resolver, connection) -> None:
    result = converse(resolver, "zones = weak.example", **connection)
    assert result[Stage.RCPT].decision is None and result[Stage.RCPT].verdicts == ()


def test_trusted_clients_cause_no_lookups(resolver, server) -> None:
    converse(resolver, "zones = weak.example", trusted=True)
    assert server.count("9.113.0.203.weak.example") == 0


@pytest.mark.parametrize("stage", ["connect", "helo", "mail", "rcpt"])
def test_reject_at_chooses_the_stage(resolver, stage: str) -> None:
    results = converse(resolver, f"zones = weak.example\nreject_at = {stage}")
    refused = [s for s, r in results.items() if r.decision is not None]
    assert refused == [Stage(stage)]


def test_monitor_mode_tags(resolver) -> None:
    result = converse(resolver, "zones = weak.example\nmode = monitor")[Stage.RCPT]
    assert result.decision is None
    assert result.verdicts[0].monitored is Action.REJECT


def test_no_zones_decides_nothing() -> None:
    settings = config.load("t.ini", text="").checks["dnsbl"]
    assert not Pipeline([(dnsbl.CHECK, settings)]).acts_on(Stage.RCPT)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(
            "zen.example=x", "[dnsbl] zones: expected a comma-separated list of zone=w", id="weight"
        ),
        pytest.param("zen.example=1:10.0.0.1", "[dnsbl] zones: expected", id="code-outside-127"),
        pytest.param(
            "zen.example=1:127.0.0.9-127.0.0.2", "[dnsbl] zones: expected", id="code-reversed"
        ),
        pytest.param("bad..zone=1", "[dnsbl] zones: expected", id="zone-name"),
    ],
)
def test_bad_zone_configuration(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load("t.ini", text=f"[dnsbl]\nzones = {value}")


def test_zone_configuration_round_trips() -> None:
    settings = config.load(
        "t.ini", text="[dnsbl]\nzones = zen.example=3:127.0.0.2-127.0.0.11|127.0.0.20, b.example"
    )
    effective = config.effective_values(settings)["dnsbl"]["zones"]
    assert effective == "zen.example=3:127.0.0.2-127.0.0.11|127.0.0.20, b.example=1"
