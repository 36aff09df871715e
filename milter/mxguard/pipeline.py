"""Run the enabled checks of a stage, in order, and combine their verdicts into one decision.

* The DNS questions of every check of the stage are asked together, in parallel, first.
* A check in monitor mode (its own, or inherited from [milter] mode) never refuses: its
  refusal becomes a tag that says what it would have done.
* The first rejection decides, and later checks are skipped. A tempfail does not stop the
  stage: a later check may still reject, which is the more useful answer (Postfix's
  ``defer_if_permit``). So a DNS failure never defers mail that is refused anyway.
* An exception in a check is logged with its traceback and becomes 451 4.3.0: a bug never
  turns into a 5xx, and it never escapes to libmilter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .check import Check, Services
from .facts import Facts, Stage
from .options import CheckSettings
from .verdict import Action, Verdict, internal_error

log = logging.getLogger("mxguard.pipeline")


@dataclass(frozen=True, slots=True)
class StageResult:
    """The decision of a stage and every verdict that led to it."""

    decision: Verdict | None  # the refusal to send, or None to continue
    verdicts: tuple[Verdict, ...]


class Pipeline:
    """The configured checks, ready to run stage by stage."""

    def __init__(self, checks: Sequence[tuple[Check, CheckSettings]]) -> None:
        self._by_stage: dict[Stage, list[tuple[Check, CheckSettings]]] = {
            stage: [(c, s) for c, s in checks if stage in c.stages] for stage in Stage
        }

    def acts_on(self, stage: Stage) -> bool:
        """True when some enabled check decides at ``stage`` (so the MTA must wait for us)."""
        return bool(self._by_stage[stage])

    def run(self, stage: Stage, facts: Facts, services: Services) -> StageResult:
        """Run the checks of ``stage`` on ``facts`` and return the stage's decision."""
        entries = self._by_stage[stage]
        if not entries:
            return StageResult(None, ())
        self._prefetch(stage, facts, services, entries)
        verdicts: list[Verdict] = []
        deferral: Verdict | None = None
        for check, settings in entries:
            verdict = self._run_one(check, settings, stage, facts, services)
            if verdict is None:
                continue
            verdicts.append(verdict)
            if verdict.action in (Action.REJECT, Action.DISCARD):
                return StageResult(verdict, tuple(verdicts))
            if verdict.action is Action.TEMPFAIL and deferral is None:
                deferral = verdict
        return StageResult(deferral, tuple(verdicts))

    @staticmethod
    def _prefetch(
        stage: Stage,
        facts: Facts,
        services: Services,
        entries: list[tuple[Check, CheckSettings]],
    ) -> None:
        queries = []
        for check, settings in entries:
            prefetch = check.prefetch.get(stage)
            if prefetch is None:
                continue
            try:
                queries.extend(prefetch(facts, settings))
            except Exception:
                # The check will ask again itself and fail there, where the error is handled.
                log.exception("check=%s stage=%s: prefetch failed", check.name, stage)
        if queries:
            services.dns.lookup_all(queries)

    @staticmethod
    def _run_one(
        check: Check, settings: CheckSettings, stage: Stage, facts: Facts, services: Services
    ) -> Verdict | None:
        try:
            verdict = check.stages[stage](facts, settings, services)
        except Exception:
            log.exception(
                "client=%s stage=%s check=%s: internal error",
                facts.connection.client_text,
                stage,
                check.name,
            )
            verdict = internal_error(check.name)
        if verdict is not None and settings.monitor:
            verdict = verdict.as_monitored()
        return verdict
