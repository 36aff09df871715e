"""What a check is: a name, a settings class, and one pure function per stage it acts on.

A stage function takes the frozen facts, the check's settings and the services (DNS, clock,
state) and returns a Verdict, a Result (a verdict and the findings it provides), or None when
it has nothing to say. It does no I/O of its own. A check declares the kinds of finding it
``needs`` and ``provides`` (see ``findings``), and which clients it leaves alone
(``exempt``). It may also name the DNS questions it will ask at a stage, so the pipeline can
issue the questions of every check of that stage in parallel before any of them runs.

Adding a check: one module in ``checks/`` that exports ``CHECK``, and its line in
``checks/__init__.py``; its settings class is its INI section, its docstring its README entry.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mxguard.core.dns import DnsResult, Query
from mxguard.core.facts import Connection, Facts, Stage
from mxguard.core.findings import Finding, Item, OutsideClient
from mxguard.core.notices import Notices
from mxguard.core.options import CheckSettings
from mxguard.core.verdict import Verdict


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
    # Seconds that only go forward, for time limits (the SPF bound): tests pass a fake one.
    monotonic: Callable[[], float] = time.monotonic


class Exempt(enum.Enum):
    """Clients a check may leave alone; the pipeline does not run it for them."""

    TRUSTED = "trusted"  # the client is in [milter] trusted_networks
    AUTHENTICATED = "authenticated"  # the client logged in with SMTP AUTH
    ALLOWED = "allowed"  # an access-list allow entry matched (the Allowed finding)


OUR_CLIENTS = frozenset({Exempt.TRUSTED, Exempt.AUTHENTICATED})
INBOUND = OUR_CLIENTS | {Exempt.ALLOWED}


@dataclass(frozen=True, slots=True)
class Result:
    """What a stage function returns when it also provides findings."""

    verdict: Verdict | None
    provides: tuple[Item, ...] = ()


StageFunction = Callable[[Facts, Any, Services], Verdict | Result | None]
PrefetchFunction = Callable[[Facts, Any, Services], Iterable[Query]]


@dataclass(frozen=True, slots=True)
class Check:
    """A check's declaration; each module in ``checks/`` exports one as ``CHECK``."""

    name: str
    summary: str
    settings: type[CheckSettings]
    stages: Mapping[Stage, StageFunction]
    prefetch: Mapping[Stage, PrefetchFunction] = field(default_factory=dict)
    # The clients the check is not run for: by default our own (trusted, authenticated) and
    # those an access-list entry allowed. The relay check honours no allow, so an allowed
    # client never becomes an open relay; the recipients check runs for everybody.
    exempt: frozenset[Exempt] = INBOUND
    # The kinds of finding the stage functions read, and those they return in a Result. The
    # pipeline refuses an order that runs a check before a check it needs at the same stage.
    needs: frozenset[type[Finding]] = frozenset()
    provides: frozenset[type[Finding]] = frozenset()
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
    # runs the checks of every earlier stage again for that client, RCPT for each recipient.
    finds_client: Callable[[Facts, Any, Services], OutsideClient | None] | None = None
    # Problems with settings that parse but cannot work (a key file others can read), as
    # (option, what was expected) pairs: they stop startup and refuse a reload.
    validate: Callable[[Any], Iterable[tuple[str, str]]] | None = None

    def exempts(self, connection: Connection, allowed: bool) -> bool:
        """True when the check is not run for this client."""
        exempt = self.exempt
        return bool(
            (connection.trusted and Exempt.TRUSTED in exempt)
            or (connection.authenticated and Exempt.AUTHENTICATED in exempt)
            or (allowed and Exempt.ALLOWED in exempt)
        )

    def active_stages(self, settings: Any) -> frozenset[Stage]:
        """The stages whose functions run for ``settings``."""
        if self.decides_at is None:
            return frozenset(self.stages)
        return frozenset(self.decides_at(settings)) & frozenset(self.stages)
