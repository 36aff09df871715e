"""The pymilter adapter: callbacks and macros in, facts to the pipeline, verdicts back out.

No policy lives here. The adapter builds frozen facts, asks the pipeline, logs each decision
(:mod:`decision_log`), turns a refusal into ``setreply`` plus a return code, and at end of
message writes the Authentication-Results and X-MXGuard fields after removing forged ones
(:mod:`message_edits`). What it asks the MTA for is decided in :mod:`negotiation`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any

import Milter

from mxguard.core import metrics
from mxguard.core.facts import Connection, Envelope, Facts, Message, Recipient, Stage
from mxguard.core.session import Session
from mxguard.core.verdict import Action, Replies, sent_as
from mxguard.daemon.callback_args import as_bytes, ip_from
from mxguard.daemon.decision_log import log_decision, logged
from mxguard.daemon.message_edits import edit_message
from mxguard.daemon.negotiation import MACROS, NO_REPLY_BITS, STAGE_NO_REPLY_BITS, protocol_bits
from mxguard.daemon.runtime import Runtime, RuntimeHolder
from mxguard.mail.address import parse_path
from mxguard.mail.textutil import printable

errors = logging.getLogger("mxguard.adapter")

RETURN_CODES = {
    Action.REJECT: Milter.REJECT,
    Action.TEMPFAIL: Milter.TEMPFAIL,
    Action.DISCARD: Milter.DISCARD,
}


def _guarded(callback: Callable[..., int]) -> Callable[..., int]:
    """Never let an exception reach libmilter: log it and tempfail the client with 451 4.3.0.

    Where the MTA expects no reply to this step, the failure is remembered and given at the
    next step that has a reply."""

    @functools.wraps(callback)
    def wrapper(self: MxguardMilter, *args: Any) -> int:
        try:
            return callback(self, *args)
        except Exception:
            errors.exception("internal error in %s", callback.__name__)
            if not self._protocol & NO_REPLY_BITS.get(callback.__name__, 0):
                return self._internal_error()
            if callback.__name__ in ("connect", "hello"):
                self._connection_failed = True
            else:
                self._transaction_failed = True
            return Milter.NOREPLY

    return wrapper


class MxguardMilter(Milter.Base):
    """One SMTP connection, as the MTA reports it."""

    def __init__(self, holder: RuntimeHolder) -> None:
        super().__init__()
        self._holder = holder
        self._in_transaction = False
        self.runtime: Runtime = holder.acquire()
        self.services = self.runtime.services()
        self.connection = Connection(client_ip=None)
        self.session = Session()
        self._connection_failed = False
        self._reset_transaction()

    def _reset_transaction(self) -> None:
        if self._in_transaction:
            self._in_transaction = False
            self._holder.in_flight.end()
        self.envelope: Envelope | None = None
        self.session.new_transaction()
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._transaction_failed = False

    # -- negotiation ------------------------------------------------------------------------

    def negotiate(self, opts: list[int]) -> int:
        """Ask only for the steps we use, no reply where no check acts, and rejected RCPTs."""
        try:
            return self._negotiate(opts)
        except Exception:
            errors.exception("option negotiation failed; taking every step with replies")
            self._protocol = 0
            return Milter.ALL_OPTS

    def _negotiate(self, opts: list[int]) -> int:
        actions, offered, _, _ = opts
        opts[1] = self._protocol = protocol_bits(self.runtime.pipeline, offered)
        opts[2] = opts[3] = 0
        if actions & Milter.SETSYMLIST:
            for stage, macros in MACROS.items():
                # Milter.Base.setsymlist passes bytes, which the C extension refuses.
                self._ctx.setsymlist(stage, " ".join(macros))
        return Milter.CONTINUE

    # -- callbacks --------------------------------------------------------------------------

    @_guarded
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        """Record the client and the listener, then run the connect checks."""
        macro = self.getsymval
        client_ip = ip_from(hostaddr, macro("{client_addr}"))
        interface = ip_from(None, macro("{if_addr}") or macro("{daemon_addr}"))
        daemon = macro("{daemon_name}") or ""
        self.connection = Connection(
            client_ip=client_ip,
            client_name=hostname or "",
            daemon_name=daemon,
            interface_ip=interface,
            mta_name=macro("j") or "",
            trusted=self.runtime.is_trusted(client_ip),
            submission=daemon in self.runtime.settings.milter.submission_daemons,
        )
        return self._stage(Stage.CONNECT, self._facts(Stage.CONNECT))

    @_guarded
    def hello(self, name: str) -> int:
        """Record the HELO/EHLO name, then run the HELO checks."""
        self.connection = dataclasses.replace(self.connection, helo=name)
        return self._stage(Stage.HELO, self._facts(Stage.HELO))

    @_guarded
    def envfrom(self, sender: str, *esmtp: str) -> int:
        """Start a transaction; record SMTP AUTH; run the MAIL checks."""
        self._reset_transaction()
        if not self._holder.in_flight.begin():
            # SIGTERM: the transactions in flight finish, a new one is asked to come back.
            reply = Replies.STOPPING
            self.setreply(reply.smtp_code, reply.dsn_code, "mxguard is stopping, try again later")
            return Milter.TEMPFAIL
        self._in_transaction = True
        macro = self.getsymval
        self.connection = dataclasses.replace(
            self.connection,
            auth_user=macro("{auth_authen}") or "",
            auth_type=macro("{auth_type}") or "",
        )
        metrics.TRANSACTIONS.inc()
        self.envelope = Envelope(
            raw_sender=sender,
            sender=parse_path(sender, allow_null=True, allow_bare_postmaster=False),
            esmtp=esmtp,
            queue_id=macro("i") or "",
        )
        return self._stage(Stage.MAIL, self._facts(Stage.MAIL))

    @_guarded
    def envrcpt(self, recipient: str, *esmtp: str) -> int:
        """Run the RCPT checks on one recipient; remember it when it is accepted."""
        if self.envelope is None:  # RCPT without MAIL: only a broken MTA sends this
            return Milter.CONTINUE
        macro = self.getsymval
        self.envelope = dataclasses.replace(
            self.envelope, queue_id=macro("i") or self.envelope.queue_id
        )
        current = Recipient(
            raw=recipient,
            path=parse_path(recipient),
            esmtp=esmtp,
            mta_rejected=macro("{rcpt_mailer}") == "error",
        )
        code = self._stage(Stage.RCPT, self._facts(Stage.RCPT, recipient=current))
        if code == Milter.CONTINUE and not current.mta_rejected:
            self.envelope = dataclasses.replace(
                self.envelope, recipients=(*self.envelope.recipients, current)
            )
        return code

    @_guarded
    def header(self, name: str | bytes, value: str | bytes) -> int:
        """Keep the header field, as bytes, for the end-of-message checks (never replies)."""
        self._headers.append((as_bytes(name), as_bytes(value)))
        return Milter.NOREPLY if self._protocol & Milter.P_NR_HDR else Milter.CONTINUE

    # libmilter's callback hands the value over as bytes; keep them (see Milter.Base).
    header_bytes = header

    @_guarded
    def body(self, chunk: bytes) -> int:
        """Keep the body for the checks that read it (DKIM, ARC); never replies."""
        self._body.append(bytes(chunk))
        self._body_size += len(chunk)
        return Milter.NOREPLY if self._protocol & Milter.P_NR_BODY else Milter.CONTINUE

    @_guarded
    def eom(self) -> int:
        """Run the end-of-message checks; if accepted, write our header fields."""
        if self.envelope is None:
            return Milter.CONTINUE
        self.envelope = dataclasses.replace(
            self.envelope, queue_id=self.getsymval("i") or self.envelope.queue_id
        )
        if self._connection_failed or self._transaction_failed:
            self._reset_transaction()
            return self._internal_error()
        message = Message.from_raw(self._headers, b"".join(self._body), self._body_size)
        self._body = []
        code = self._stage(Stage.EOM, self._facts(Stage.EOM, message=message))
        if code == Milter.CONTINUE:
            edit_message(
                self,
                message,
                self.session.verdicts(),
                self.runtime.settings.milter.authserv_id,
                leading_space=bool(self._protocol & Milter.P_HDR_LEADSPC),
            )
            metrics.VERDICTS.labels("eom", "-", "accept").inc()
            if self.runtime.settings.log.log_accepts:
                log_decision(Stage.EOM, "-", "accept", "", self.connection, self.envelope)
        self._reset_transaction()
        return code

    def abort(self) -> int:
        """The client or the MTA gave up on the transaction."""
        self._reset_transaction()
        return Milter.CONTINUE

    def close(self) -> int:
        """The connection ended: its transaction, if any, and its hold on the runtime too."""
        self._reset_transaction()
        self._holder.release(self.runtime)
        return Milter.CONTINUE

    # -- helpers ----------------------------------------------------------------------------

    def _facts(
        self, stage: Stage, recipient: Recipient | None = None, message: Message | None = None
    ) -> Facts:
        return self.session.facts(stage, self.connection, self.envelope, recipient, message)

    def _stage(self, stage: Stage, facts: Facts) -> int:
        """Run the pipeline for a stage and turn its decision into a milter reply."""
        no_reply = self._no_reply(stage)
        if self._connection_failed or self._transaction_failed:
            return no_reply if no_reply == Milter.NOREPLY else self._internal_error()
        if not self.runtime.pipeline.wants(stage):
            return no_reply
        result = self.runtime.pipeline.run(stage, facts, self.services)
        self.session.record(stage, result)
        decision = result.decision
        # One line per refusal: the verdict that decided. What else the stage found (a second
        # DNS failure, a tag) concerns mail that is refused anyway, so it is logged at debug.
        level = logging.INFO if decision is None else logging.DEBUG
        for verdict in result.verdicts:
            if verdict.action is not Action.CONTINUE:
                action = f"would-{verdict.monitored}" if verdict.monitored else verdict.action
                metrics.VERDICTS.labels(str(stage), verdict.check, str(action)).inc()
                if verdict is not decision:
                    self._log_line(stage, verdict.check, action, logged(verdict), facts, level)
        if decision is None:
            return no_reply
        reply = decision.reply or Replies.TEMPORARY
        text = printable(decision.text, 400)
        # The log shows the reply as the client reads it: libmilter treats % as a format
        # character, and the MTA turns %% back into %.
        self._log_line(stage, decision.check, decision.action, text, facts)
        self.setreply(reply.smtp_code, reply.dsn_code, text.replace("%", "%%"))
        return RETURN_CODES[sent_as(decision)]

    def _internal_error(self) -> int:
        reply = Replies.INTERNAL_ERROR
        try:
            self.setreply(reply.smtp_code, reply.dsn_code, "internal error, try again later")
        except Exception:
            errors.exception("setreply failed")
        return Milter.TEMPFAIL

    def _no_reply(self, stage: Stage) -> int:
        """What to return at ``stage`` when there is nothing to say: NOREPLY where negotiated."""
        no_reply = self._protocol & STAGE_NO_REPLY_BITS.get(stage, 0)
        return Milter.NOREPLY if no_reply else Milter.CONTINUE

    def _log_line(
        self,
        stage: Stage,
        check: str,
        action: str,
        reason: str,
        facts: Facts,
        level: int = logging.INFO,
    ) -> None:
        """Log a decision at ``stage``; ``to=`` names the recipient being judged, if any."""
        log_decision(
            stage, check, action, reason, self.connection, self.envelope, facts.recipient, level
        )
