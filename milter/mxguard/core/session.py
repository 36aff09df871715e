"""What one SMTP connection's checks have decided and found so far, stage by stage.

The verdicts are kept for the header fields written at end of message; the findings are what
later checks read. Those of CONNECT and HELO last for the connection, the others for one
transaction. A refused recipient's verdicts and findings concern that recipient only, and are
dropped; an accepted one's are kept (a dnsbl tag at RCPT belongs to the message).
"""

from __future__ import annotations

from mxguard.core.facts import Connection, Envelope, Facts, Message, Recipient, Stage
from mxguard.core.findings import NONE, Findings
from mxguard.core.pipeline import StageResult
from mxguard.core.verdict import Verdict

CONNECTION_STAGES = (Stage.CONNECT, Stage.HELO)


class Session:
    """The verdicts and findings of a connection and of its current transaction."""

    __slots__ = ("_connection_findings", "_connection_verdicts", "_findings", "_verdicts")

    def __init__(self) -> None:
        self._connection_verdicts: list[Verdict] = []
        self._connection_findings = NONE
        self.new_transaction()

    def new_transaction(self) -> None:
        """Forget the transaction's verdicts and findings; keep the connection's."""
        self._verdicts: list[Verdict] = []
        self._findings = self._connection_findings

    def facts(
        self,
        stage: Stage,
        connection: Connection,
        envelope: Envelope | None = None,
        recipient: Recipient | None = None,
        message: Message | None = None,
    ) -> Facts:
        """The facts of ``stage``, with what the earlier stages found."""
        return Facts(stage, connection, envelope, recipient, message, self._findings)

    def record(self, stage: Stage, result: StageResult) -> None:
        """Keep what a stage decided and found (not for a refused recipient)."""
        if stage is Stage.RCPT and result.decision is not None:
            return
        findings = result.findings
        if stage in CONNECTION_STAGES:
            self._connection_verdicts.extend(result.verdicts)
            self._connection_findings = findings
        else:
            self._verdicts.extend(result.verdicts)
        self._findings = findings

    @property
    def findings(self) -> Findings:
        """The findings so far."""
        return self._findings

    def verdicts(self) -> tuple[Verdict, ...]:
        """Every verdict kept, the connection's first: what the header fields report."""
        return (*self._connection_verdicts, *self._verdicts)
