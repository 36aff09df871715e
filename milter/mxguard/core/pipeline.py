"""Run the enabled checks of a stage, in order, and combine their verdicts into one decision.

* The DNS questions of every check of the stage are asked together, in parallel, first.
* A check runs only for the clients it does not exempt (``Check.exempt``: by default our own
  clients and those an access-list allow entry matched, the ``Allowed`` finding).
* A check sees the findings of the checks before it (``Facts.findings``); at load, an order
  that runs a check before one whose findings it needs at the same stage is refused.
* A check in monitor mode (its own, or inherited from [milter] mode) never refuses: its
  refusal becomes a tag that says what it would have done.
* The first rejection decides, and later checks are skipped. A tempfail does not stop the
  stage: a later check may still reject, which is the more useful answer (Postfix's
  ``defer_if_permit``). So a DNS failure never defers mail that is refused anyway.
* An exception in a check is logged with its traceback and becomes 451 4.3.0, and every kind
  of finding it provides becomes "could not tell" for the checks after it: a bug never turns
  into a 5xx, and it never escapes to libmilter.
* Behind a front-end MTA, a check may name the real outside client at end of message
  (``Check.finds_client``, the ``OutsideClient`` finding): the checks of every earlier stage
  then run again for that client (RCPT once per recipient), and the end-of-message checks
  see it too. Their refusal is the end-of-message refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from mxguard.core.check import Check, Result, Services
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Facts, Stage
from mxguard.core.findings import NONE, Allowed, CouldNotTell, Findings, Item, OutsideClient
from mxguard.core.options import CheckSettings
from mxguard.core.verdict import Action, Verdict, internal_error

log = logging.getLogger("mxguard.pipeline")

EARLIER_STAGES = (Stage.CONNECT, Stage.HELO, Stage.MAIL, Stage.RCPT)


@dataclass(frozen=True, slots=True)
class StageResult:
    """The decision of a stage, every verdict that led to it, and the findings after it."""

    decision: Verdict | None  # the refusal to send, or None to continue
    verdicts: tuple[Verdict, ...]
    findings: Findings = NONE


def _prepared(check: Check, settings: CheckSettings, source: str) -> Any:
    """What ``check``'s stage functions receive; a prepare that raises (a bug, or a value the
    schema let through) stops startup or refuses the reload like a bad value, naming the
    check's section, instead of a traceback (``source``: the INI file, for the message)."""
    if check.prepare is None:
        return settings
    try:
        return check.prepare(settings)
    except Exception as error:
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}[{check.name}]: cannot be set up: {error}") from error


@dataclass(frozen=True, slots=True)
class _Entry:
    check: Check
    settings: CheckSettings
    prepared: Any  # what the stage functions receive

    @property
    def stages(self) -> frozenset[Stage]:
        return self.check.active_stages(self.settings)


def check_order(entries: Sequence[_Entry], source: str = "") -> None:
    """Refuse an order that runs a check before a check whose findings it needs, where both
    act at the same stage (``order = spoof, spf``): ConfigError naming both."""
    for position, consumer in enumerate(entries):
        for provider in entries[position + 1 :]:
            needed = consumer.check.needs & provider.check.provides
            shared = consumer.stages & provider.stages
            if needed and shared:
                where = f"{source}: " if source else ""
                kinds = ", ".join(sorted(kind.__name__ for kind in needed))
                raise ConfigError(
                    f"{where}[milter] order: {consumer.check.name} comes before "
                    f"{provider.check.name}, whose findings ({kinds}) it needs at the same "
                    f"stage; expected {provider.check.name} before {consumer.check.name}"
                )


class Pipeline:
    """The configured checks, ready to run stage by stage."""

    def __init__(self, checks: Sequence[tuple[Check, CheckSettings]], source: str = "") -> None:
        entries = [
            _Entry(check, settings, _prepared(check, settings, source))
            for check, settings in checks
        ]
        check_order(entries, source)
        self._deciding = {stage: [e for e in entries if stage in e.stages] for stage in Stage}
        self._prefetching = {
            stage: [e for e in entries if stage in e.check.prefetch] for stage in Stage
        }
        self._observing = {
            stage: [e for e in entries if stage in e.check.observers] for stage in Stage
        }
        self._client_finders = [e for e in entries if e.check.finds_client is not None]

    def acts_on(self, stage: Stage) -> bool:
        """True when some enabled check decides at ``stage`` (so the MTA must wait for us)."""
        return bool(self._deciding[stage])

    def reads_body(self) -> bool:
        """True when an enabled end-of-message check reads the body (so the MTA must send it)."""
        return any(entry.check.reads_body for entry in self._deciding[Stage.EOM])

    def wants(self, stage: Stage) -> bool:
        """True when some check decides, asks DNS questions or observes at ``stage``."""
        return bool(self._deciding[stage] or self._prefetching[stage] or self._observing[stage])

    def run(self, stage: Stage, facts: Facts, services: Services) -> StageResult:
        """Run the checks of ``stage`` on ``facts`` and return the stage's decision."""
        replayed: StageResult | None = None
        if stage is Stage.EOM and self._client_finders:
            outside = self._find_client(facts, services)
            if outside is not None:
                facts = replace(
                    facts,
                    connection=outside.connection,
                    findings=facts.findings.plus((outside,)),
                )
                replayed = self._replay(facts, services)
                decision = replayed.decision
                if decision is not None and decision.action is not Action.TEMPFAIL:
                    return replayed
                facts = facts.knowing(replayed.findings)
        result = self._decide(stage, facts, services)
        if replayed is not None:
            result = StageResult(
                result.decision or replayed.decision,
                replayed.verdicts + result.verdicts,
                result.findings,
            )
        if self._observing[stage]:
            self._observe(stage, facts.knowing(result.findings), services)
        return result

    def _find_client(self, facts: Facts, services: Services) -> OutsideClient | None:
        for entry in self._client_finders:
            try:
                found = entry.check.finds_client(facts, entry.prepared, services)  # type: ignore[misc]
            except Exception:
                log.exception("check=%s: finding the client failed", entry.check.name)
                continue
            if found is not None:
                return found
        return None

    def _replay(self, facts: Facts, services: Services) -> StageResult:
        """The checks of every earlier stage again, for the client a trusted relay named; the
        RCPT checks once for each recipient. A recipient's findings stay its own."""
        verdicts: list[Verdict] = []
        deferral: Verdict | None = None
        findings = facts.findings
        envelope = facts.envelope
        for stage in EARLIER_STAGES:
            recipients = envelope.recipients if envelope and stage is Stage.RCPT else (None,)
            if stage is Stage.RCPT and not recipients:
                continue
            for recipient in recipients:
                seen = replace(facts, stage=stage, recipient=recipient, findings=findings)
                result = self._decide(stage, seen, services)
                verdicts.extend(result.verdicts)
                decision = result.decision
                if decision is not None and decision.action is not Action.TEMPFAIL:
                    return StageResult(decision, tuple(verdicts), result.findings)
                deferral = deferral or decision
                if stage is not Stage.RCPT:
                    findings = result.findings
        return StageResult(deferral, tuple(verdicts), findings)

    def _observe(self, stage: Stage, facts: Facts, services: Services) -> None:
        allowed = facts.findings.known(Allowed) is not None
        for entry in self._observing[stage]:
            if entry.check.exempts(facts.connection, allowed):
                continue
            try:
                entry.check.observers[stage](facts, entry.prepared, services)
            except Exception:
                log.exception("check=%s stage=%s: observer failed", entry.check.name, stage)

    def _decide(self, stage: Stage, facts: Facts, services: Services) -> StageResult:
        self._prefetch(stage, facts, services)
        verdicts: list[Verdict] = []
        deferral: Verdict | None = None
        for entry in self._deciding[stage]:
            allowed = facts.findings.known(Allowed) is not None
            if entry.check.exempts(facts.connection, allowed):
                continue
            verdict, provided = self._run_one(entry, stage, facts, services)
            if provided:
                facts = facts.knowing(facts.findings.plus(provided))
            if verdict is None:
                continue
            verdicts.append(verdict)
            if verdict.action in (Action.REJECT, Action.DISCARD):
                return StageResult(verdict, tuple(verdicts), facts.findings)
            if verdict.action is Action.TEMPFAIL and deferral is None:
                deferral = verdict
        return StageResult(deferral, tuple(verdicts), facts.findings)

    def _prefetch(self, stage: Stage, facts: Facts, services: Services) -> None:
        queries = []
        allowed = facts.findings.known(Allowed) is not None
        for entry in self._prefetching[stage]:
            if entry.check.exempts(facts.connection, allowed):
                continue
            try:
                queries.extend(entry.check.prefetch[stage](facts, entry.prepared, services))
            except Exception:
                # The check will ask again itself and fail there, where the error is handled.
                log.exception("check=%s stage=%s: prefetch failed", entry.check.name, stage)
        if queries:
            services.dns.lookup_all(queries)

    @staticmethod
    def _run_one(
        entry: _Entry, stage: Stage, facts: Facts, services: Services
    ) -> tuple[Verdict | None, tuple[Item, ...]]:
        check = entry.check
        try:
            outcome = check.stages[stage](facts, entry.prepared, services)
        except Exception:
            log.exception(
                "client=%s stage=%s check=%s: internal error",
                facts.connection.client_text,
                stage,
                check.name,
            )
            # What the check would have found is unknown, not absent: the checks that need
            # it must not read a missing pass as a fail.
            untold = tuple(
                CouldNotTell(kind, f"{check.name}: internal error") for kind in check.provides
            )
            outcome = Result(internal_error(check.name), untold)
        if isinstance(outcome, Result):
            verdict, provided = outcome.verdict, outcome.provides
        else:
            verdict, provided = outcome, ()
        if verdict is not None and entry.settings.monitor:
            verdict = verdict.as_monitored()
        return verdict, provided
