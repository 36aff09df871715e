"""Small fakes behind the project's own interfaces, for unit tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mxguard.core import config
from mxguard.core.check import Check, Result, Services
from mxguard.core.dns import DnsResult, NotFound, Query
from mxguard.core.facts import Facts
from mxguard.core.findings import (
    NONE,
    Allowed,
    DkimSignature,
    DkimSignatures,
    Findings,
    SpfIdentity,
    SpfResults,
)
from mxguard.core.notices import Notices


class FakeClock:
    """A clock that stands still until a test moves ``now``."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeDns:
    """Answers from a dict; everything else does not exist. Records every question asked."""

    answers: dict[tuple[str, str], DnsResult] = field(default_factory=dict)
    asked: list[Query] = field(default_factory=list)
    batches: list[list[Query]] = field(default_factory=list)

    def lookup(self, name: str, rdtype: str) -> DnsResult:
        self.asked.append(Query(name, rdtype))
        return self.answers.get((name, rdtype), NotFound(nxdomain=True))

    def lookup_all(self, queries: Iterable[Query]) -> dict[Query, DnsResult]:
        batch = list(queries)
        self.batches.append(batch)
        return {q: self.lookup(q.name, q.rdtype) for q in batch}


def services(ini: str = "", dns: FakeDns | None = None, now: float = 1_000_000.0) -> Services:
    """Services for a check, with site settings from ``ini`` and a fixed clock."""
    settings = config.load("test.ini", text=ini)
    clock = lambda: now  # noqa: E731
    return Services(site=settings.milter, dns=dns or FakeDns(), clock=clock, notices=Notices(clock))


def run_check(
    check: Check, facts: Facts, settings: Any, services: Services
) -> tuple[Any, Findings]:
    """One check's stage function at ``facts.stage``, as the pipeline runs it: not for the
    clients it exempts; (its verdict or None, the findings it provided)."""
    allowed = facts.findings.known(Allowed) is not None
    if check.exempts(facts.connection, allowed):
        return None, NONE
    outcome = check.stages[facts.stage](facts, settings, services)
    if isinstance(outcome, Result):
        return outcome.verdict, Findings(outcome.provides)
    return outcome, NONE


def decide(check: Check, facts: Facts, settings: Any, services: Services) -> Any:
    """The verdict of one check's stage function at ``facts.stage`` (see run_check)."""
    return run_check(check, facts, settings, services)[0]


def findings(*items: Any) -> Findings:
    """Findings from ``items``, as a transaction gathers them: SpfResults of one identity
    each are merged (a later result of an identity wins), other kinds replace."""
    merged: list[Any] = []
    for item in items:
        previous = next((m for m in merged if isinstance(m, SpfResults)), None)
        if isinstance(item, SpfResults) and previous is not None:
            merged.remove(previous)
            item = SpfResults(item.mailfrom or previous.mailfrom, item.helo or previous.helo)
        merged.append(item)
    return Findings(merged)


def spf_results(result: str, value: str, identity: str = "mailfrom") -> SpfResults:
    """The spf check's finding for one identity (``value``: an address or a domain)."""
    found = SpfIdentity(value.rpartition("@")[2].rstrip(".").lower(), result)
    return SpfResults(**{identity: found})


def dkim_signatures(*signatures: tuple[str, str]) -> DkimSignatures:
    """The dkim check's finding for (d=, result) signatures."""
    return DkimSignatures(
        tuple(DkimSignature(d.rstrip(".").lower(), result) for d, result in signatures)
    )
