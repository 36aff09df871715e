"""The decision log: one line per decision, in Postfix's own log style.

``QUEUEID: stage=... check=... action=... client=name[ip] from=<...> to=<...> reason="..."``,
on the logger ``mxguard.decision`` (logsetup and the admins' filters know it by that name).
"""

from __future__ import annotations

import logging

from mxguard.core.facts import Connection, Envelope, Recipient, Stage
from mxguard.core.verdict import Verdict
from mxguard.mail.textutil import printable

log = logging.getLogger("mxguard.decision")


def log_decision(
    stage: Stage,
    check: str,
    action: str,
    reason: str,
    connection: Connection,
    envelope: Envelope | None,
    recipient: Recipient | None = None,
    level: int = logging.INFO,
) -> None:
    """One decision, in Postfix's own log style: the queue id first, so one grep finds
    both sides; ``from=`` once there is a sender, ``to=`` once there is a recipient (at
    RCPT the one being judged, later the accepted ones); the reason last and unescaped."""
    if not log.isEnabledFor(level):
        return
    fields = [
        f"stage={stage}",
        f"check={check}",
        f"action={action}",
        f"client={client(connection)}",
    ]
    if envelope is not None:
        fields.append(f"from=<{printable(envelope.raw_sender.strip('<>'), 100)}>")
        if recipient is not None:
            recipients = [recipient.raw]
        else:
            recipients = [r.raw for r in envelope.recipients]
        if recipients:
            to = ",".join(r.strip("<>") for r in recipients)
            fields.append(f"to=<{printable(to, 300)}>")
    fields.append(f"reason={quoted(reason)}")
    queue_id = (envelope.queue_id if envelope else "") or "NOQUEUE"
    log.log(level, "%s: %s", queue_id, " ".join(fields))


def quoted(text: str) -> str:
    """``text`` in double quotes, as it is: the reason is the last field, so everything
    between ``reason="`` and the line's final ``"`` is the text, quotes inside included."""
    return '"' + printable(text, 400) + '"'


def logged(verdict: Verdict) -> str:
    """What the log says a verdict was about: the reply a refusal sends (or, in monitor mode,
    would send), else the reason of a tag."""
    if verdict.text and (verdict.refuses or verdict.monitored):
        return verdict.text
    return verdict.reason


def client(connection: Connection) -> str:
    """``name[ip]`` as Postfix logs a client: ``unknown`` without a verified name, for which
    Postfix and Sendmail hand the milter ``[ip]`` as the host name."""
    name = connection.client_name
    if not name or name.startswith("[") or name == "unknown":
        name = "unknown"
    return f"{printable(name, 100)}[{connection.client_text}]"
