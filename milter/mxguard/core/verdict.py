"""Verdicts: what a check decided, and the one table of SMTP replies mxguard can give."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Action(enum.StrEnum):
    """What the MTA is told to do; ordered by how final it is."""

    CONTINUE = "continue"
    ALLOW = "allow"  # an allow entry matched: the inbound checks that follow are skipped
    TAG = "tag"
    TEMPFAIL = "tempfail"
    REJECT = "reject"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply code with its RFC 3463 enhanced status code."""

    smtp_code: str
    dsn_code: str


class Replies:
    """The one table of replies: every refusal mxguard gives uses one of these."""

    POLICY = Reply("550", "5.7.1")
    UNKNOWN_USER = Reply("550", "5.1.1")
    BAD_ADDRESS = Reply("501", "5.1.3")
    AUTH_REQUIRED = Reply("530", "5.7.0")
    TEMPORARY = Reply("451", "4.7.1")
    TEMPORARY_DNS = Reply("451", "4.4.3")
    LOCKED_OUT = Reply("450", "4.7.1")
    INTERNAL_ERROR = Reply("451", "4.3.0")
    STOPPING = Reply("451", "4.3.2")  # a new transaction while mxguard drains for a stop
    BAD_SENDER_DOMAIN = Reply("550", "5.1.8")
    BAD_SENDER_SYNTAX = Reply("501", "5.1.7")
    LOOP = Reply("554", "5.4.6")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One method's result for the Authentication-Results header (RFC 8601)."""

    method: str
    result: str
    reason: str = ""
    properties: tuple[tuple[str, str, str], ...] = ()  # (ptype, property, value)


@dataclass(frozen=True, slots=True)
class ChangeSender:
    """At end of message, replace the envelope sender (smfi_chgfrom)."""

    address: str


@dataclass(frozen=True, slots=True)
class ReplaceRecipient:
    """At end of message, deliver to ``new`` instead of ``old`` (smfi_delrcpt + smfi_addrcpt)."""

    old: str
    new: str


EnvelopeEdit = ChangeSender | ReplaceRecipient


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision of one check at one stage.

    ``text`` is what the client sees after the codes; ``reason`` is for the log and the trace
    header. ``outcome`` is a stable id such as ``relay.percent-hack``.
    """

    action: Action
    check: str
    outcome: str
    reason: str
    reply: Reply | None = None
    text: str = ""
    auth: tuple[AuthResult, ...] = ()
    monitored: Action | None = None  # the action monitor mode held back
    headers: tuple[tuple[str, str], ...] = ()  # fields to add at end of message (Received-SPF)
    envelope: tuple[EnvelopeEdit, ...] = ()  # envelope changes to make at end of message
    quarantine: str = ""  # at end of message, hold the message in the MTA's quarantine

    @property
    def refuses(self) -> bool:
        """True when the client gets a 4xx or 5xx (or the message is dropped)."""
        return self.action in (Action.TEMPFAIL, Action.REJECT, Action.DISCARD)

    def as_monitored(self) -> Verdict:
        """The same verdict held back by monitor mode: logged and tagged, never refused or
        quarantined."""
        if self.quarantine:
            return replace(self, quarantine="", reason=f"{self.reason} (monitor: not quarantined)")
        if not self.refuses:
            return self
        return replace(self, action=Action.TAG, monitored=self.action)


def sent_as(decision: Verdict) -> Action:
    """The action the MTA is given for a refusal: a final decision with a 4xx reply (the
    harvest lock-out) goes as a tempfail, since libmilter sends a reply code only when it
    matches the return code (else Postfix's generic 550)."""
    reply = decision.reply
    if decision.action is Action.REJECT and reply is not None and reply.smtp_code[0] == "4":
        return Action.TEMPFAIL
    return decision.action


def reject(check: str, outcome: str, reason: str, reply: Reply = Replies.POLICY) -> Verdict:
    """A permanent refusal whose reply text is ``<check>: <reason>``."""
    return Verdict(Action.REJECT, check, f"{check}.{outcome}", reason, reply, f"{check}: {reason}")


def tempfail(check: str, outcome: str, reason: str, reply: Reply = Replies.TEMPORARY) -> Verdict:
    """A temporary refusal (4xx): the sender keeps the message and retries."""
    return Verdict(
        Action.TEMPFAIL, check, f"{check}.{outcome}", reason, reply, f"{check}: {reason}"
    )


def deferred(check: str, outcome: str, reason: str, dns: bool = True) -> Verdict:
    """A decision that rests on what could not be told now (``dns``: because the DNS failed):
    451 4.4.3, or 451 4.3.0 when a check failed; the sender retries."""
    reply = Replies.TEMPORARY_DNS if dns else Replies.INTERNAL_ERROR
    return tempfail(check, outcome, reason, reply)


def tag(check: str, outcome: str, reason: str, auth: tuple[AuthResult, ...] = ()) -> Verdict:
    """Accept, but record the finding in the trace header."""
    return Verdict(Action.TAG, check, f"{check}.{outcome}", reason, auth=auth)


def allow(check: str, outcome: str, reason: str) -> Verdict:
    """Accept and skip the inbound checks that follow (an access-list allow entry)."""
    return Verdict(Action.ALLOW, check, f"{check}.{outcome}", reason)


def passed(
    check: str, outcome: str, reason: str = "", auth: tuple[AuthResult, ...] = ()
) -> Verdict:
    """Accept, recording only the Authentication-Results of the check."""
    return Verdict(Action.CONTINUE, check, f"{check}.{outcome}", reason, auth=auth)


def by_severity(
    severity: str, check: str, outcome: str, reason: str, auth: tuple[AuthResult, ...] = ()
) -> Verdict:
    """The verdict an ``off|tag|reject`` option asks for; ``off`` only records ``auth``."""
    if severity == "reject":
        verdict = reject(check, outcome, reason)
    elif severity == "tag":
        verdict = tag(check, outcome, reason)
    else:
        verdict = passed(check, outcome, reason)
    return replace(verdict, auth=auth) if auth else verdict


def internal_error(check: str) -> Verdict:
    """A bug in a check: the client retries later, never a 5xx."""
    return Verdict(
        Action.TEMPFAIL,
        check,
        f"{check}.internal-error",
        "internal error",
        Replies.INTERNAL_ERROR,
        "internal error, try again later",
    )
