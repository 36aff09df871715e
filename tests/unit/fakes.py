"""Small fakes behind the project's own interfaces, for unit tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mxguard import config
from mxguard.check import Services
from mxguard.dns import DnsResult, NotFound, Query
from mxguard.notices import Notices


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
