"""The pipeline: order, first rejection wins, tempfail only when nothing rejects, monitor mode,
exceptions contained, DNS questions of a stage asked together."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass

import pytest

from mxguard.core import config
from mxguard.core.check import OUR_CLIENTS, Check, Result
from mxguard.core.dns import Query
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Facts, Stage
from mxguard.core.findings import Allowed, CouldNotTell, Finding, Findings
from mxguard.core.options import CheckSettings, Mode
from mxguard.core.pipeline import Pipeline
from mxguard.core.verdict import Action, Replies, allow, reject, tag, tempfail

from .fakes import FakeDns, services

FACTS = Facts(Stage.MAIL, Connection(client_ip=ipaddress.ip_address("203.0.113.1")))
ENFORCE = CheckSettings(mode=Mode.ENFORCE)
MONITOR = CheckSettings(mode=Mode.MONITOR)


@dataclass
class Calls:
    names: list[str]


def make_check(name: str, action: str | None, calls: Calls, queries: tuple[Query, ...] = ()):
    def run(facts, settings, svc):
        calls.names.append(name)
        if action == "raise":
            raise RuntimeError("bug")
        if action == "reject":
            return reject(name, "bad", "no")
        if action == "tempfail":
            return tempfail(name, "dns", "later", Replies.TEMPORARY_DNS)
        if action == "tag":
            return tag(name, "odd", "hmm")
        if action == "allow":
            return Result(allow(name, "listed", "known friend"), (Allowed("known friend"),))
        return None

    return Check(
        name=name,
        summary=name,
        settings=CheckSettings,
        stages={Stage.MAIL: run},
        prefetch={Stage.MAIL: lambda facts, settings, svc: queries} if queries else {},
    )


def run(*specs: tuple[str, str | None, CheckSettings], dns: FakeDns | None = None):
    calls = Calls([])
    pipeline = Pipeline([(make_check(n, a, calls), s) for n, a, s in specs])
    return pipeline.run(Stage.MAIL, FACTS, services(dns=dns)), calls.names


def test_checks_run_in_the_given_order() -> None:
    _, order = run(("b", None, ENFORCE), ("a", None, ENFORCE), ("c", "tag", ENFORCE))
    assert order == ["b", "a", "c"]


def test_first_rejection_decides_and_stops() -> None:
    result, order = run(("a", "tag", ENFORCE), ("b", "reject", ENFORCE), ("c", "reject", ENFORCE))
    assert result.decision is not None and result.decision.check == "b"
    assert order == ["a", "b"]
    assert [v.action for v in result.verdicts] == [Action.TAG, Action.REJECT]


def test_tempfail_gives_way_to_a_later_rejection() -> None:
    result, _ = run(("a", "tempfail", ENFORCE), ("b", "reject", ENFORCE))
    assert result.decision.action is Action.REJECT and result.decision.check == "b"


def test_tempfail_decides_when_nothing_rejects() -> None:
    result, order = run(("a", "tempfail", ENFORCE), ("b", "tag", ENFORCE))
    assert result.decision.action is Action.TEMPFAIL
    assert result.decision.reply == Replies.TEMPORARY_DNS
    assert order == ["a", "b"]


def test_nothing_to_say_continues() -> None:
    result, _ = run(("a", None, ENFORCE), ("b", "tag", ENFORCE))
    assert result.decision is None


@pytest.mark.parametrize("action", ["reject", "tempfail"])
def test_monitor_mode_never_refuses(action: str) -> None:
    result, _ = run(("a", action, MONITOR))
    assert result.decision is None
    (verdict,) = result.verdicts
    assert verdict.action is Action.TAG and verdict.monitored == Action(action)


def test_an_exception_becomes_451_430_and_is_logged(caplog) -> None:
    result, order = run(("a", "raise", ENFORCE), ("b", None, ENFORCE))
    assert result.decision.action is Action.TEMPFAIL
    assert result.decision.reply == Replies.INTERNAL_ERROR
    assert (result.decision.reply.smtp_code, result.decision.reply.dsn_code) == ("451", "4.3.0")
    assert order == ["a", "b"]
    assert "RuntimeError: bug" in caplog.text


def test_an_exception_in_monitor_mode_does_not_refuse() -> None:
    result, _ = run(("a", "raise", MONITOR))
    assert result.decision is None


def test_dns_questions_of_a_stage_are_asked_together() -> None:
    calls = Calls([])
    q1, q2, q3 = Query("a.test", "A"), Query("b.test", "TXT"), Query("c.test", "A")
    pipeline = Pipeline(
        [
            (make_check("a", None, calls, (q1, q2)), ENFORCE),
            (make_check("b", None, calls, (q3,)), ENFORCE),
        ]
    )
    dns = FakeDns()
    pipeline.run(Stage.MAIL, FACTS, services(dns=dns))
    assert dns.batches == [[q1, q2, q3]]


def test_acts_on_only_stages_with_checks() -> None:
    pipeline = Pipeline([(make_check("a", None, Calls([])), ENFORCE)])
    assert pipeline.acts_on(Stage.MAIL)
    assert not pipeline.acts_on(Stage.CONNECT)
    assert pipeline.run(Stage.CONNECT, FACTS, services()).decision is None


def test_allow_skips_the_inbound_checks_that_follow() -> None:
    calls = Calls([])
    relay_like = dataclasses.replace(make_check("relay", "reject", calls), exempt=OUR_CLIENTS)
    pipeline = Pipeline(
        [
            (make_check("before", "tag", calls), ENFORCE),
            (make_check("access", "allow", calls), ENFORCE),
            (make_check("dnsbl", "reject", calls), ENFORCE),
            (relay_like, ENFORCE),
        ]
    )
    result = pipeline.run(Stage.MAIL, FACTS, services())
    assert calls.names == ["before", "access", "relay"]
    assert result.decision is not None and result.decision.check == "relay"


def test_allow_from_an_earlier_stage_skips_inbound_checks() -> None:
    calls = Calls([])
    pipeline = Pipeline([(make_check("dnsbl", "reject", calls), ENFORCE)])
    earlier = FACTS.knowing(Findings([Allowed("friend")]))
    assert pipeline.run(Stage.MAIL, earlier, services()).decision is None
    assert calls.names == []


def test_decides_at_selects_the_stage_from_settings() -> None:
    calls = Calls([])
    check = dataclasses.replace(
        make_check("late", "reject", calls), decides_at=lambda settings: {Stage.RCPT}
    )
    pipeline = Pipeline([(check, ENFORCE)])
    assert not pipeline.acts_on(Stage.MAIL)
    assert pipeline.run(Stage.MAIL, FACTS, services()).decision is None
    assert calls.names == []


def test_prefetch_only_stage_asks_dns_but_decides_nothing() -> None:
    query = Query("early.test", "A")
    check = Check(
        name="early",
        summary="",
        settings=CheckSettings,
        stages={Stage.RCPT: lambda facts, settings, svc: None},
        prefetch={Stage.CONNECT: lambda facts, settings, svc: [query]},
    )
    pipeline = Pipeline([(check, ENFORCE)])
    assert pipeline.wants(Stage.CONNECT) and not pipeline.acts_on(Stage.CONNECT)
    dns = FakeDns()
    assert pipeline.run(Stage.CONNECT, FACTS, services(dns=dns)).verdicts == ()
    assert dns.batches == [[query]]


def test_prepare_turns_settings_into_what_stage_functions_get() -> None:
    seen = []
    check = Check(
        name="prepared",
        summary="",
        settings=CheckSettings,
        stages={Stage.MAIL: lambda facts, prepared, svc: seen.append(prepared)},
        prepare=lambda settings: ("loaded", settings.mode),
    )
    Pipeline([(check, MONITOR)]).run(Stage.MAIL, FACTS, services())
    assert seen == [("loaded", Mode.MONITOR)]


# --- findings between checks --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen(Finding):
    value: str


def providing(name: str, calls: Calls, action: str = "provide") -> Check:
    def run(facts, settings, svc):
        calls.names.append(name)
        if action == "raise":
            raise RuntimeError("bug")
        return Result(None, (Seen("x"),))

    return Check(
        name=name,
        summary=name,
        settings=CheckSettings,
        stages={Stage.MAIL: run},
        provides=frozenset({Seen}),
    )


def needing(name: str, calls: Calls, found: list) -> Check:
    def run(facts, settings, svc):
        calls.names.append(name)
        found.append(facts.findings.get(Seen))
        return None

    return Check(
        name=name,
        summary=name,
        settings=CheckSettings,
        stages={Stage.MAIL: run},
        needs=frozenset({Seen}),
    )


def test_a_check_sees_the_findings_of_the_checks_before_it() -> None:
    calls, found = Calls([]), []
    pipeline = Pipeline([(providing("p", calls), ENFORCE), (needing("n", calls, found), ENFORCE)])
    result = pipeline.run(Stage.MAIL, FACTS, services())
    assert found == [Seen("x")] and result.findings.known(Seen) == Seen("x")


def test_a_provider_that_raised_leaves_could_not_tell_not_absent() -> None:
    calls, found = Calls([]), []
    pipeline = Pipeline(
        [(providing("p", calls, "raise"), ENFORCE), (needing("n", calls, found), ENFORCE)]
    )
    result = pipeline.run(Stage.MAIL, FACTS, services())
    assert result.decision is not None and result.decision.reply == Replies.INTERNAL_ERROR
    (untold,) = found
    assert isinstance(untold, CouldNotTell) and untold.reason == "p: internal error"
    assert result.findings.known(Seen) is None and result.findings.unknown(Seen) == untold


def test_an_order_that_puts_a_check_before_what_it_needs_is_refused() -> None:
    calls = Calls([])
    with pytest.raises(
        ConfigError,
        match=r"t\.ini: \[milter\] order: n comes before p, whose "
        r"findings \(Seen\) it needs at the same stage; expected p before n",
    ):
        Pipeline([(needing("n", calls, []), ENFORCE), (providing("p", calls), ENFORCE)], "t.ini")


def test_the_real_checks_order_is_checked_at_load() -> None:
    for order, named in (
        ("spoof, spf", "spoof comes before spf"),
        ("dmarc, dkim", "dmarc comes before dkim"),
    ):
        settings = config.load("t.ini", text=f"[milter]\norder = {order}\n")
        with pytest.raises(ConfigError, match=re.escape(f"t.ini: [milter] order: {named}")):
            Pipeline(settings.ordered_checks(), source=settings.path)
    default = config.load("t.ini", text="")
    Pipeline(default.ordered_checks(), source=default.path)  # the shipped order works
