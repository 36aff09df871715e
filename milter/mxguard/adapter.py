"""The pymilter adapter: callbacks and macros in, facts to the pipeline, verdicts back out.

No policy lives here. The adapter builds frozen facts, asks the pipeline, logs each decision,
turns a refusal into ``setreply`` plus a return code, and at end of message writes the
Authentication-Results and X-MXGuard fields after removing forged ones.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import Milter

from . import metrics
from .address import parse_path
from .facts import Connection, Envelope, Facts, IPAddress, Message, Recipient, Stage, normalise_ip
from .headers import AUTH_RESULTS, TRACE, authentication_results, forged_fields, trace_header
from .runtime import Runtime, RuntimeHolder
from .session import Session
from .textutil import printable
from .verdict import Action, ChangeSender, Replies, Verdict, sent_as

log = logging.getLogger("mxguard.decision")
errors = logging.getLogger("mxguard.adapter")

RETURN_CODES = {
    Action.REJECT: Milter.REJECT,
    Action.TEMPFAIL: Milter.TEMPFAIL,
    Action.DISCARD: Milter.DISCARD,
}

# Macros requested per stage (at most 5 each); Postfix and Sendmail then send exactly these.
MACROS = {
    Milter.M_CONNECT: ("j", "{daemon_name}", "{daemon_addr}", "{if_addr}", "{client_addr}"),
    Milter.M_ENVFROM: ("i", "{auth_authen}", "{auth_type}"),
    Milter.M_ENVRCPT: ("i", "{rcpt_mailer}"),
    Milter.M_EOM: ("i",),
}

# The callbacks the adapter uses, with the stage whose checks decide there (None: never acts).
CALLBACK_STAGES: dict[str, Stage | None] = {
    "connect": Stage.CONNECT,
    "hello": Stage.HELO,
    "envfrom": Stage.MAIL,
    "envrcpt": Stage.RCPT,
    "header": None,
    "body": None,
}


NO_REPLY_BITS = {name: bits[0] for name, bits in Milter.OPTIONAL_CALLBACKS.items()}
STAGE_NO_REPLY_BITS = {
    stage: NO_REPLY_BITS[name] for name, stage in CALLBACK_STAGES.items() if stage
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


def _ip_from(hostaddr: Any, fallback: str | None) -> IPAddress | None:
    """The client address from the callback's (ip, port, ...) tuple, else from a macro."""
    for candidate in (hostaddr[0] if isinstance(hostaddr, tuple) and hostaddr else None, fallback):
        if candidate:
            try:
                return normalise_ip(
                    ipaddress.ip_address(str(candidate).strip("[]").removeprefix("IPv6:"))
                )
            except ValueError:
                continue
    return None


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
        pipeline = self.runtime.pipeline
        skip = 0
        for callback, (no_reply, no_call) in Milter.OPTIONAL_CALLBACKS.items():
            if callback not in CALLBACK_STAGES:
                skip |= no_call
                continue
            stage = CALLBACK_STAGES[callback]
            if stage is None or not pipeline.acts_on(stage):
                skip |= no_reply
            if callback == "body" and not pipeline.reads_body():
                skip |= no_call
        # Leading white space of header values as sent: DKIM's simple canonicalization needs
        # the exact bytes, and our own added values must then carry their space themselves.
        wanted = Milter.P_RCPT_REJ | Milter.P_HDR_LEADSPC | skip
        opts[1] = self._protocol = offered & wanted
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
        client_ip = _ip_from(hostaddr, macro("{client_addr}"))
        interface = _ip_from(None, macro("{if_addr}") or macro("{daemon_addr}"))
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
        self._headers.append((_as_bytes(name), _as_bytes(value)))
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
            self._edit_headers(message)
            metrics.VERDICTS.labels("eom", "-", "accept").inc()
            if self.runtime.settings.log.log_accepts:
                self._log_line(Stage.EOM, "-", "accept", "")
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
                    self._log_line(stage, verdict.check, action, _logged(verdict), facts, level)
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

    def _edit_headers(self, message: Message) -> None:
        authserv_id = self.runtime.settings.milter.authserv_id
        # Highest index first, so each deletion leaves the other indexes valid.
        for name, index in reversed(forged_fields(message.headers, authserv_id)):
            self.chgheader(name, index, "")
        verdicts = self.session.verdicts()
        for verdict in verdicts:
            for name, value in verdict.headers:
                self._add_header(name, value)
            if verdict.quarantine:
                self.quarantine(verdict.quarantine)
            for edit in verdict.envelope:
                if isinstance(edit, ChangeSender):
                    self.chgfrom(edit.address)
                else:
                    self.delrcpt(edit.old)
                    self.addrcpt(edit.new)
        self._add_header(TRACE, trace_header(authserv_id, verdicts))
        self._add_header(AUTH_RESULTS, authentication_results(authserv_id, verdicts))

    def _add_header(self, name: str, value: str) -> None:
        """Insert a field at the top; with leading space negotiated, the value brings its own."""
        if self._protocol & Milter.P_HDR_LEADSPC:
            value = " " + value
        self.addheader(name, value, 0)

    def _log_line(
        self,
        stage: Stage,
        check: str,
        action: str,
        reason: str,
        facts: Facts | None = None,
        level: int = logging.INFO,
    ) -> None:
        """One decision, in Postfix's own log style: the queue id first, so one grep finds
        both sides; ``from=`` once there is a sender, ``to=`` once there is a recipient (at
        RCPT the one being judged, later the accepted ones); the reason last and unescaped."""
        if not log.isEnabledFor(level):
            return
        envelope = self.envelope
        fields = [
            f"stage={stage}",
            f"check={check}",
            f"action={action}",
            f"client={_client(self.connection)}",
        ]
        if envelope is not None:
            fields.append(f"from=<{printable(envelope.raw_sender.strip('<>'), 100)}>")
            if facts is not None and facts.recipient is not None:
                recipients = [facts.recipient.raw]
            else:
                recipients = [r.raw for r in envelope.recipients]
            if recipients:
                to = ",".join(r.strip("<>") for r in recipients)
                fields.append(f"to=<{printable(to, 300)}>")
        fields.append(f"reason={_quoted(reason)}")
        queue_id = (envelope.queue_id if envelope else "") or "NOQUEUE"
        log.log(level, "%s: %s", queue_id, " ".join(fields))


def _as_bytes(value: str | bytes) -> bytes:
    """A callback argument as bytes (pymilter decodes some with surrogateescape)."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", errors="surrogateescape")


def _quoted(text: str) -> str:
    """``text`` in double quotes, as it is: the reason is the last field, so everything
    between ``reason="`` and the line's final ``"`` is the text, quotes inside included."""
    return '"' + printable(text, 400) + '"'


def _logged(verdict: Verdict) -> str:
    """What the log says a verdict was about: the reply a refusal sends (or, in monitor mode,
    would send), else the reason of a tag."""
    if verdict.text and (verdict.refuses or verdict.monitored):
        return verdict.text
    return verdict.reason


def _client(connection: Connection) -> str:
    """``name[ip]`` as Postfix logs a client: ``unknown`` without a verified name, for which
    Postfix and Sendmail hand the milter ``[ip]`` as the host name."""
    name = connection.client_name
    if not name or name.startswith("[") or name == "unknown":
        name = "unknown"
    return f"{printable(name, 100)}[{connection.client_text}]"
