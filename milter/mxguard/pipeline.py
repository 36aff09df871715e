"""Run the enabled checks of a stage, in order, and combine their verdicts into one decision.

* The DNS questions of every check of the stage are asked together, in parallel, first.
* A check in monitor mode (its own, or inherited from [milter] mode) never refuses: its
  refusal becomes a tag that says what it would have done.
* The first rejection decides, and later checks are skipped. A tempfail does not stop the
  stage: a later check may still reject, which is the more useful answer (Postfix's
  ``defer_if_permit``). So a DNS failure never defers mail that is refused anyway.
* An access-list "allow" (Action.ALLOW) skips the inbound checks that follow, in this stage
  and the later ones of the transaction (the relay check is not inbound and still runs).
* An exception in a check is logged with its traceback and becomes 451 4.3.0: a bug never
  turns into a 5xx, and it never escapes to libmilter.
* Behind a front-end MTA, a check may name the real outside client at end of message
  (``Check.finds_client``): the connect, HELO and MAIL checks then run again for that client,
  and the end-of-message checks see it too. Their refusal is the end-of-message refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .check import Check, Services
from .errors import ConfigError
from .facts import Connection, Facts, Stage
from .options import CheckSettings
from .verdict import Action, Verdict, internal_error

log = logging.getLogger("mxguard.pipeline")


@dataclass(frozen=True, slots=True)
class StageResult:
    """The decision of a stage and every verdict that led to it."""

    decision: Verdict | None  # the refusal to send, or None to continue
    verdicts: tuple[Verdict, ...]


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


class Pipeline:
    """The configured checks, ready to run stage by stage."""

    def __init__(self, checks: Sequence[tuple[Check, CheckSettings]], source: str = "") -> None:
        entries = [
            _Entry(check, settings, _prepared(check, settings, source))
            for check, settings in checks
        ]
        self._deciding = {
            stage: [e for e in entries if stage in e.check.active_stages(e.settings)]
            for stage in Stage
        }
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
        replayed: tuple[Verdict, ...] = ()
        if stage is Stage.EOM and self._client_finders:
            outside = self._find_client(facts, services)
            if outside is not None:
                facts = replace(facts, connection=outside)
                early = self._replay(facts, services)
                if early.decision is not None and early.decision.action is not Action.TEMPFAIL:
                    return early
                replayed = early.verdicts
                facts = facts.seeing(replayed)
        result = self._decide(stage, facts, services)
        if replayed:
            result = StageResult(
                result.decision or self._deferral(replayed), replayed + result.verdicts
            )
        if self._observing[stage]:
            self._observe(stage, facts.seeing(result.verdicts), services)
        return result

    def _find_client(self, facts: Facts, services: Services) -> Connection | None:
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
        """The connect, HELO and MAIL checks again, for the client a trusted relay named."""
        verdicts: list[Verdict] = []
        for stage in (Stage.CONNECT, Stage.HELO, Stage.MAIL):
            seen = replace(facts, stage=stage, earlier=facts.earlier + tuple(verdicts))
            result = self._decide(stage, seen, services)
            verdicts.extend(result.verdicts)
            if result.decision is not None and result.decision.action is not Action.TEMPFAIL:
                return StageResult(result.decision, tuple(verdicts))
        return StageResult(self._deferral(verdicts), tuple(verdicts))

    @staticmethod
    def _deferral(verdicts: Sequence[Verdict]) -> Verdict | None:
        return next((v for v in verdicts if v.action is Action.TEMPFAIL), None)

    def _observe(self, stage: Stage, facts: Facts, services: Services) -> None:
        for entry in self._observing[stage]:
            try:
                entry.check.observers[stage](facts, entry.prepared, services)
            except Exception:
                log.exception("check=%s stage=%s: observer failed", entry.check.name, stage)

    def _decide(self, stage: Stage, facts: Facts, services: Services) -> StageResult:
        allowed = any(v.action is Action.ALLOW for v in facts.earlier)
        self._prefetch(stage, facts, services, allowed)
        verdicts: list[Verdict] = []
        deferral: Verdict | None = None
        # A check sees what the checks before it found, in this stage too (spoof reads SPF).
        seen = facts
        for entry in self._deciding[stage]:
            if allowed and entry.check.inbound:
                continue
            verdict = self._run_one(entry, stage, seen, services)
            if verdict is None:
                continue
            verdicts.append(verdict)
            seen = facts.seeing(tuple(verdicts))
            if verdict.action in (Action.REJECT, Action.DISCARD):
                return StageResult(verdict, tuple(verdicts))
            if verdict.action is Action.TEMPFAIL and deferral is None:
                deferral = verdict
            allowed = allowed or verdict.action is Action.ALLOW
        return StageResult(deferral, tuple(verdicts))

    def _prefetch(self, stage: Stage, facts: Facts, services: Services, allowed: bool) -> None:
        queries = []
        for entry in self._prefetching[stage]:
            if allowed and entry.check.inbound:
                continue
            try:
                queries.extend(entry.check.prefetch[stage](facts, entry.prepared, services))
            except Exception:
                # The check will ask again itself and fail there, where the error is handled.
                log.exception("check=%s stage=%s: prefetch failed", entry.check.name, stage)
        if queries:
            services.dns.lookup_all(queries)

    @staticmethod
    def _run_one(entry: _Entry, stage: Stage, facts: Facts, services: Services) -> Verdict | None:
        check = entry.check
        try:
            verdict = check.stages[stage](facts, entry.prepared, services)
        except Exception:
            log.exception(
                "client=%s stage=%s check=%s: internal error",
                facts.connection.client_text,
                stage,
                check.name,
            )
            verdict = internal_error(check.name)
        if verdict is not None and entry.settings.monitor:
            verdict = verdict.as_monitored()
        return verdict
