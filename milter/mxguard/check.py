"""What a check is: a name, a settings class, and one pure function per stage it acts on.

A stage function takes the frozen facts, the check's settings and the services (DNS, clock,
state) and returns a Verdict, or None when it has nothing to say. It does no I/O of its own.
A check may also name the DNS questions it will ask at a stage, so the pipeline can issue the
questions of every check of that stage in parallel before any of them runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .dns import DnsResult, Query
from .facts import Connection, Facts, Stage
from .notices import Notices
from .options import CheckSettings
from .verdict import Verdict


class DnsView(Protocol):
    """The DNS interface checks see (``dns.ConnectionLookups`` in production, fakes in tests)."""

    def lookup(self, name: str, rdtype: str) -> DnsResult:
        """The answer for one question."""
        ...

    def lookup_all(self, queries: Iterable[Query]) -> dict[Query, DnsResult]:
        """Answers for several questions, asked in parallel."""
        ...


@dataclass(frozen=True, slots=True)
class Services:
    """What a check may use besides the facts: the site settings, DNS, the clock and the state."""

    site: Any  # config.MilterSettings: host names, local domains, networks
    dns: DnsView
    clock: Callable[[], float]
    notices: Notices
    store: Any = None


StageFunction = Callable[[Facts, Any, Services], Verdict | None]
PrefetchFunction = Callable[[Facts, Any, Services], Iterable[Query]]


@dataclass(frozen=True, slots=True)
class Check:
    """A check's declaration; each module in ``checks/`` exports one as ``CHECK``."""

    name: str
    summary: str
    settings: type[CheckSettings]
    stages: Mapping[Stage, StageFunction]
    prefetch: Mapping[Stage, PrefetchFunction] = field(default_factory=dict)
    # Inbound checks are skipped once an access-list "allow" has matched; the relay check is
    # not, so an allowed client never becomes an open relay.
    inbound: bool = True
    # Turns the settings into what the stage functions receive (e.g. with data files loaded);
    # it may log problems but must not fail. None: the settings themselves.
    prepare: Callable[[Any], Any] | None = None
    # Functions that see every stage result, even after another check refused (the harvest
    # check counts refused recipients); what they return is ignored.
    observers: Mapping[Stage, StageFunction] = field(default_factory=dict)
    # The stages the check decides at for these settings (e.g. a configurable reject stage);
    # None: every stage in ``stages``.
    decides_at: Callable[[Any], Iterable[Stage]] | None = None
    # The check reads the message body at end of message (DKIM, ARC): only then does the
    # adapter ask the MTA for it.
    reads_body: bool = False
    # At end of message, before any check of that stage: the outside client that a trusted
    # relay names (the received check behind a front-end MTA), or None. The pipeline then
    # runs the connect, HELO and MAIL checks again for that client.
    finds_client: Callable[[Facts, Any, Services], Connection | None] | None = None
    # Problems with settings that parse but cannot work (a key file others can read), as
    # (option, what was expected) pairs: they stop startup and refuse a reload.
    validate: Callable[[Any], Iterable[tuple[str, str]]] | None = None

    def active_stages(self, settings: Any) -> frozenset[Stage]:
        """The stages whose functions run for ``settings``."""
        if self.decides_at is None:
            return frozenset(self.stages)
        return frozenset(self.decides_at(settings)) & frozenset(self.stages)
