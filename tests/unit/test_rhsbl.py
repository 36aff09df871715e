"""The RHSBL check against a real DNS server: MAIL FROM and HELO domains, scoring, error codes,
timeouts, the total shared with the DNSBL, stages and exemptions."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from mxguard.checks import dnsbl, rhsbl
from mxguard.core import config
from mxguard.core.check import Check, Services
from mxguard.core.dns import ConnectionLookups, Resolver
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Envelope, Facts, Recipient, Stage
from mxguard.core.findings import ListingWeight
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline, StageResult
from mxguard.core.session import Session
from mxguard.core.verdict import Action
from mxguard.mail.address import parse_path
from tests.support.dnsserver import TestDnsServer

from .fakes import FakeClock

LONG = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 40]) + ".example"  # 240 characters

ZONE = f"""
$TTL 300
dbl.example.                   IN SOA ns.dbl.example. hostmaster.dbl.example. 1 3600 600 86400 60
bad.example.dbl.example.       IN A   127.0.1.2
bad.example.dbl.example.       IN TXT "bad.example is a spam domain, see https://dbl.example/q"
badhelo.example.dbl.example.   IN A   127.0.1.3
both.example.dbl.example.      IN A   127.0.1.2
phish.example.dbl.example.     IN A   127.0.1.102
{LONG}.dbl.example.            IN A   127.0.1.2
uri.example.                   IN SOA ns.uri.example. hostmaster.uri.example. 1 3600 600 86400 60
bad.example.uri.example.       IN A   127.0.0.2
badhelo.example.uri.example.   IN A   127.0.0.2
refusing.example.              IN SOA ns.refusing.example. hm.refusing.example. 1 3600 600 86400 60
bad.example.refusing.example.  IN A   127.255.255.254
iperror.example.               IN SOA ns.iperror.example. hm.iperror.example. 1 3600 600 86400 60
bad.example.iperror.example.   IN A   127.0.1.255
wild.example.                  IN SOA ns.wild.example. hostmaster.wild.example. 1 3600 600 86400 60
bad.example.wild.example.      IN A   192.0.2.1
zen.example.                   IN SOA ns.zen.example. hostmaster.zen.example. 1 3600 600 86400 60
9.113.0.203.zen.example.       IN A   127.0.0.2
"""

LISTED_IP = ipaddress.ip_address("203.0.113.9")  # listed by zen.example (the IP list)
CLEAN_IP = ipaddress.ip_address("198.51.100.7")
CLEAN_HELO = "mail.clean.example"


@pytest.fixture(scope="module")
def server() -> Iterator[TestDnsServer]:
    with TestDnsServer(ZONE) as dns:
        yield dns


@pytest.fixture
def resolver(server: TestDnsServer) -> Iterator[Resolver]:
    server.reset_queries()
    resolver = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=0.3, cache_size=1000)
    yield resolver
    resolver.close()


def converse(
    resolver: Resolver,
    ini: str,
    sender: str = "<a@bad.example>",
    helo: str = CLEAN_HELO,
    ip=CLEAN_IP,
    checks: Sequence[Check] = (rhsbl.CHECK,),
    rcpts: int = 1,
    notices: Notices | None = None,
    **connection: object,
) -> dict[str, StageResult]:
    """Run connect, helo, mail and ``rcpts`` RCPTs; each stage sees the verdicts before it, as
    the adapter passes them. Results are keyed "connect" ... "rcpt" (the last RCPT), "rcpt1"..."""
    settings = config.load("t.ini", text=ini)
    clock = FakeClock()
    services = Services(
        site=settings.milter,
        dns=ConnectionLookups(resolver),
        clock=clock,
        notices=notices or Notices(clock),
    )
    pipeline = Pipeline([(check, settings.checks[check.name]) for check in checks])
    conn = Connection(client_ip=ip, helo=helo, **connection)
    envelope = Envelope(sender, parse_path(sender, allow_null=True, allow_bare_postmaster=False))
    steps = [
        ("connect", Facts(Stage.CONNECT, replace(conn, helo=""))),
        ("helo", Facts(Stage.HELO, conn)),
        ("mail", Facts(Stage.MAIL, conn, envelope)),
    ]
    rcpt = Recipient("<alice@example.test>", parse_path("<alice@example.test>"))
    steps += [(f"rcpt{n}", Facts(Stage.RCPT, conn, envelope, rcpt)) for n in range(1, rcpts + 1)]
    results: dict[str, StageResult] = {}
    session = Session()
    for name, facts in steps:
        facts = session.facts(facts.stage, facts.connection, facts.envelope, facts.recipient)
        result = pipeline.run(facts.stage, facts, services)
        results[name] = result
        session.record(facts.stage, result)
    results["rcpt"] = results[f"rcpt{rcpts}"]
    return results


def outcomes(result: StageResult, check: str = "rhsbl") -> list[str]:
    return [v.outcome for v in result.verdicts if v.check == check]


# --------------------------------------------------------------------------- listings


def test_listed_sender_domain_is_refused_at_the_first_rcpt_with_the_zone_text(resolver) -> None:
    results = converse(resolver, "[rhsbl]\nzones = dbl.example")
    assert [results[s].decision for s in ("connect", "helo", "mail")] == [None] * 3
    decision = results["rcpt"].decision
    assert decision.action is Action.REJECT and decision.outcome == "rhsbl.listed"
    assert (decision.reply.smtp_code, decision.reply.dsn_code) == ("550", "5.7.1")
    assert decision.text == (
        "rhsbl: bad.example listed by dbl.example: "
        "bad.example is a spam domain, see https://dbl.example/q"
    )


@pytest.mark.parametrize(
    "helo",
    [
        pytest.param("badhelo.example", id="plain"),
        pytest.param("BadHelo.Example.", id="case-and-dot"),
    ],
)
def test_listed_helo_domain_is_refused(resolver, helo: str) -> None:
    result = converse(resolver, "[rhsbl]\nzones = dbl.example", "<a@clean.example>", helo)
    assert result["rcpt"].decision.text == "rhsbl: badhelo.example listed by dbl.example"


def test_unlisted_domains_pass(resolver) -> None:
    result = converse(resolver, "[rhsbl]\nzones = dbl.example, uri.example", "<a@clean.example>")
    assert result["rcpt"].verdicts == ()


@pytest.mark.parametrize(
    ("zones", "threshold", "sender", "helo", "outcome"),
    [
        pytest.param(
            "uri.example=1", 2, "<a@bad.example>", CLEAN_HELO, "below-threshold", id="below"
        ),
        pytest.param(
            "uri.example=1, dbl.example=1", 2, "<a@bad.example>", CLEAN_HELO, "listed", id="sum"
        ),
        pytest.param("dbl.example=3", 3, "<a@bad.example>", CLEAN_HELO, "listed", id="heavy"),
        pytest.param(
            "dbl.example=1, uri.example=1",
            2,
            "<a@clean.example>",
            "badhelo.example",
            "listed",
            id="helo-in-two-zones",
        ),
        pytest.param(
            "dbl.example=1",
            2,
            "<a@bad.example>",
            "badhelo.example",
            "below-threshold",
            id="zone-once",
        ),
        pytest.param(
            "dbl.example=1, uri.example=1",
            3,
            "<a@bad.example>",
            "badhelo.example",
            "below-threshold",
            id="zone-once-two-zones",
        ),
        pytest.param(
            "dbl.example=3:127.0.1.2-127.0.1.99",
            3,
            "<a@bad.example>",
            CLEAN_HELO,
            "listed",
            id="code-in",
        ),
        pytest.param(
            "dbl.example=3:127.0.1.100-127.0.1.199",
            3,
            "<a@bad.example>",
            CLEAN_HELO,
            None,
            id="code-out",
        ),
        pytest.param("refusing.example=5", 1, "<a@bad.example>", CLEAN_HELO, None, id="error"),
        pytest.param("iperror.example=5", 1, "<a@bad.example>", CLEAN_HELO, None, id="dbl-error"),
        pytest.param("wild.example=5", 1, "<a@bad.example>", CLEAN_HELO, None, id="outside-127"),
        pytest.param("clean.example=5", 1, "<a@bad.example>", CLEAN_HELO, None, id="nxdomain"),
    ],
)
def test_scoring(resolver, zones, threshold, sender, helo, outcome: str | None) -> None:
    ini = f"[rhsbl]\nzones = {zones}\nthreshold = {threshold}"
    result = converse(resolver, ini, sender, helo)["rcpt"]
    assert outcomes(result) == ([f"rhsbl.{outcome}"] if outcome else [])


def test_code_restriction_ignores_other_codes_of_the_same_zone(resolver) -> None:
    ini = "[rhsbl]\nzones = dbl.example=3:127.0.1.2-127.0.1.99\nthreshold = 3"
    result = converse(resolver, ini, "<a@phish.example>")["rcpt"]  # answers 127.0.1.102
    assert result.verdicts == ()
    ini = "[rhsbl]\nzones = dbl.example=3:127.0.1.100-127.0.1.199\nthreshold = 3"
    assert converse(resolver, ini, "<a@phish.example>")["rcpt"].decision is not None


def test_below_threshold_tag_names_domains_and_weights(resolver) -> None:
    ini = "[rhsbl]\nzones = dbl.example=1\nthreshold = 5"
    verdict = converse(resolver, ini, "<a@bad.example>", "badhelo.example")["rcpt"].verdicts[0]
    assert verdict.action is Action.TAG
    assert verdict.reason == (
        "bad.example listed by dbl.example, badhelo.example listed by dbl.example (weight 1 of 5)"
    )
    assert verdict.check == "rhsbl"  # it provides no weight: that is the dnsbl's finding


# --------------------------------------------------------------------------- the shared total

BOTH = (dnsbl.CHECK, rhsbl.CHECK)


def shared(rhsbl_options: str = "threshold = 2", dnsbl_options: str = "threshold = 2") -> str:
    """Each list gives weight 1: the client IP by zen.example, bad.example by dbl.example."""
    return (
        f"[dnsbl]\nzones = zen.example=1\n{dnsbl_options}\n"
        f"[rhsbl]\nzones = dbl.example=1\n{rhsbl_options}\n"
    )


def test_dnsbl_tag_carries_its_weight(resolver) -> None:
    result = converse(resolver, shared(), "<a@clean.example>", ip=LISTED_IP, checks=BOTH)
    [tag] = result["rcpt"].verdicts
    assert tag.outcome == "dnsbl.below-threshold"
    assert result["rcpt"].findings.known(ListingWeight) == ListingWeight(
        1, "203.0.113.9 listed by zen.example"
    )


def test_dnsbl_weight_completes_the_total(resolver) -> None:
    result = converse(resolver, shared(), ip=LISTED_IP, checks=BOTH)["rcpt"]
    assert outcomes(result, "dnsbl") == ["dnsbl.below-threshold"]
    decision = result.decision
    assert decision.check == "rhsbl" and decision.outcome == "rhsbl.listed"
    assert decision.text == (
        "rhsbl: bad.example listed by dbl.example: "
        "bad.example is a spam domain, see https://dbl.example/q "
        "(with dnsbl: 203.0.113.9 listed by zen.example)"
    )


def test_without_the_dnsbl_listing_the_domain_alone_stays_below(resolver) -> None:
    result = converse(resolver, shared(), ip=CLEAN_IP, checks=BOTH)["rcpt"]
    assert result.decision is None
    assert outcomes(result) == ["rhsbl.below-threshold"]


def test_dnsbl_help_is_not_mentioned_when_not_needed(resolver) -> None:
    ini = shared("threshold = 1")
    decision = converse(resolver, ini, ip=LISTED_IP, checks=BOTH)["rcpt"].decision
    assert decision.check == "rhsbl" and "with dnsbl" not in decision.text


def test_dnsbl_weight_alone_never_refuses_here(resolver) -> None:
    ini = shared("threshold = 1", "threshold = 5")
    result = converse(resolver, ini, "<a@clean.example>", ip=LISTED_IP, checks=BOTH)["rcpt"]
    assert result.decision is None
    assert outcomes(result) == []


def test_dnsbl_weight_counts_once_over_several_rcpts(resolver) -> None:
    ini = shared("threshold = 3")
    results = converse(resolver, ini, ip=LISTED_IP, checks=BOTH, rcpts=3)
    for name in ("rcpt1", "rcpt2", "rcpt3"):
        assert results[name].decision is None, name
        assert outcomes(results[name]) == ["rhsbl.below-threshold"]


def test_dnsbl_deciding_earlier_still_shares(resolver) -> None:
    ini = shared(dnsbl_options="threshold = 2\nreject_at = connect")
    results = converse(resolver, ini, ip=LISTED_IP, checks=BOTH)
    assert outcomes(results["connect"], "dnsbl") == ["dnsbl.below-threshold"]
    assert results["rcpt"].decision.check == "rhsbl"


def test_dnsbl_deciding_later_does_not_share(resolver) -> None:
    ini = shared("threshold = 2\nreject_at = mail")
    results = converse(resolver, ini, ip=LISTED_IP, checks=BOTH)
    assert results["mail"].decision is None
    assert outcomes(results["mail"]) == ["rhsbl.below-threshold"]


# --------------------------------------------------------------------------- which names


@pytest.mark.parametrize(
    ("sender", "helo", "asked"),
    [
        pytest.param("<a@bad.example>", "[192.0.2.1]", ["bad.example"], id="literal-helo"),
        pytest.param("<a@bad.example>", "192.0.2.1", ["bad.example"], id="bare-ip-helo"),
        pytest.param("<a@bad.example>", "WIN-7Q2", ["bad.example"], id="single-label-helo"),
        pytest.param("<a@bad.example>", "", ["bad.example"], id="no-helo"),
        pytest.param("<a@bad.example>", "bad.example", ["bad.example"], id="same-twice"),
        pytest.param("<a@[192.0.2.1]>", "badhelo.example", ["badhelo.example"], id="literal"),
        pytest.param("<>", "badhelo.example", ["badhelo.example"], id="null-sender"),
        pytest.param("<a@1.2.3.4>", "badhelo.example", ["badhelo.example"], id="numeric-tld"),
        pytest.param("<a@nul\x00.example>", "badhelo.example", ["badhelo.example"], id="bad-from"),
    ],
)
def test_names_asked(resolver, server, sender: str, helo: str, asked: list[str]) -> None:
    converse(resolver, "[rhsbl]\nzones = dbl.example", sender, helo)
    names = sorted({q.name for q in server.queries if q.qtype == "A"})
    assert names == sorted(f"{name}.dbl.example." for name in asked)


def test_query_names_longer_than_253_are_not_asked(resolver, server) -> None:
    result = converse(resolver, "[rhsbl]\nzones = dbl.example, uri22.example", f"<a@{LONG}>")
    assert server.count(f"{LONG}.dbl.example", "A") == 1  # 252 characters
    assert server.count(f"{LONG}.uri22.example", "A") == 0  # 254 characters
    assert outcomes(result["rcpt"]) == ["rhsbl.listed"]


def test_zones_are_asked_at_mail_and_not_again(resolver, server) -> None:
    results = converse(resolver, "[rhsbl]\nzones = dbl.example, uri.example", rcpts=2)
    assert results["helo"].verdicts == ()
    assert server.count("bad.example.dbl.example", "A") == 1
    assert server.count("bad.example.uri.example", "A") == 1
    assert server.count(f"{CLEAN_HELO}.dbl.example", "A") == 1
    assert server.count("bad.example.dbl.example", "TXT") == 1


# --------------------------------------------------------------------------- errors, timeouts


def test_error_answers_are_logged_once_a_minute_per_zone(resolver, caplog) -> None:
    clock = FakeClock()
    notices = Notices(clock)
    ini = "[rhsbl]\nzones = refusing.example, iperror.example"
    for _ in range(3):
        converse(resolver, ini, notices=notices)
    clock.now += 61
    converse(resolver, ini, notices=notices)
    warnings = [r.getMessage() for r in caplog.records if "error code" in r.getMessage()]
    assert len(warnings) == 4
    assert sum("rhsbl: refusing.example" in w for w in warnings) == 2
    assert sum("rhsbl: iperror.example" in w for w in warnings) == 2


def test_timeout_is_could_not_tell_and_never_refuses(server) -> None:
    slow = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=0.3)
    result = converse(slow, "[rhsbl]\nzones = timeout.test=5")["rcpt"]
    assert result.decision is None
    assert outcomes(result) == ["rhsbl.could-not-tell"]
    assert result.verdicts[0].reason == (
        f"no answer from timeout.test for bad.example, {CLEAN_HELO}"
    )
    result = converse(slow, "[rhsbl]\nzones = timeout.test=5, uri.example=1\nthreshold = 5")
    assert result["rcpt"].decision is None
    assert outcomes(result["rcpt"]) == ["rhsbl.below-threshold"]
    slow.close()


def test_servfail_zone_is_could_not_tell(resolver) -> None:
    result = converse(resolver, "[rhsbl]\nzones = servfail.test=5")["rcpt"]
    assert result.decision is None and outcomes(result) == ["rhsbl.could-not-tell"]


# --------------------------------------------------------------------------- stages, exemptions


@pytest.mark.parametrize("stage", ["helo", "mail", "rcpt"])
def test_reject_at_chooses_the_stage(resolver, stage: str) -> None:
    ini = f"[rhsbl]\nzones = dbl.example\nreject_at = {stage}"
    results = converse(resolver, ini, "<a@bad.example>", "badhelo.example")
    refused = [name for name in ("connect", "helo", "mail", "rcpt1") if results[name].decision]
    assert refused == [stage if stage != "rcpt" else "rcpt1"]


def test_at_helo_only_the_helo_name_is_known(resolver, server) -> None:
    results = converse(resolver, "[rhsbl]\nzones = dbl.example\nreject_at = helo")
    assert results["helo"].decision is None
    assert server.count("bad.example.dbl.example") == 0  # not even asked at MAIL


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param({"auth_user": "carol@example.test", "submission": True}, id="587-auth"),
        pytest.param({"auth_user": "carol"}, id="25-auth"),
        pytest.param({"trusted": True}, id="trusted"),
    ],
)
def test_our_own_clients_pass_without_lookups(resolver, server, connection) -> None:
    result = converse(resolver, "[rhsbl]\nzones = dbl.example", **connection)
    assert result["rcpt"].decision is None and result["rcpt"].verdicts == ()
    assert server.count(qtype="A") == 0


def test_monitor_mode_tags(resolver) -> None:
    result = converse(resolver, "[rhsbl]\nzones = dbl.example\nmode = monitor")["rcpt"]
    assert result.decision is None
    assert result.verdicts[0].monitored is Action.REJECT


def test_no_zones_decides_nothing() -> None:
    settings = config.load("t.ini", text="").checks["rhsbl"]
    pipeline = Pipeline([(rhsbl.CHECK, settings)])
    assert not any(pipeline.acts_on(stage) for stage in Stage)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("zones = dbl.example=x", "[rhsbl] zones: expected a comma", id="weight"),
        pytest.param("zones = dbl.example=1:10.0.0.1", "[rhsbl] zones: expected", id="code"),
        pytest.param("zones = bad..zone", "[rhsbl] zones: expected", id="zone-name"),
        pytest.param("threshold = -1", "[rhsbl] threshold: expected a whole number", id="thr"),
        pytest.param(
            "reject_at = connect",
            "[rhsbl] reject_at: expected one of helo, mail, rcpt",
            id="reject-at-connect",
        ),
    ],
)
def test_bad_configuration_names_file_section_and_option(text: str, message: str) -> None:
    escaped = "t\\.ini: " + message.replace("[", r"\[").replace("]", r"\]")
    with pytest.raises(ConfigError, match=escaped):
        config.load("t.ini", text=f"[rhsbl]\n{text}\n")


def test_zone_configuration_round_trips() -> None:
    settings = config.load("t.ini", text="[rhsbl]\nzones = dbl.example=2:127.0.1.2-127.0.1.99")
    effective = config.effective_values(settings)["rhsbl"]["zones"]
    assert effective == "dbl.example=2:127.0.1.2-127.0.1.99"
