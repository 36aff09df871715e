"""headers - tag (or refuse) messages whose header fields break RFC 5322 or RFC 6532.

Stage: EOM. The check only tags by default (``action = tag``), and then it judges every client.
With ``action = reject``, trusted and authenticated clients are skipped: our own users' mail
programs are not refused for sloppy headers.

What counts as a finding (all of them are collected into one verdict):

* no From field, which RFC 5322 §3.6 requires;
* more than one Date, From, Sender, Reply-To, To, Cc, Bcc, Message-ID, In-Reply-To,
  References or Subject field: the RFC 5322 §3.6 table allows each at most once;
* raw 8-bit bytes in a field name or value when MAIL FROM did not carry ``SMTPUTF8``
  (``BODY=8BITMIME`` covers the body only, RFC 6152);
* control characters (NUL and the others, DEL included) in a field name or value; TAB, CR and
  LF are not findings, as folding and white space use them;
* a field longer than ``max_header_length`` octets, its name and value as the MTA passed them
  (a fold counts as the LF the MTA sends). The default, 32768, is 32 times RFC 5322's 998-octet
  line and far above real fields (a Cc list of hundreds of addresses, the References of a long
  thread); it is sendmail's default limit for all header fields together, and below
  Postfix's ``header_size_limit`` (102400), which truncates a longer field before we see it.

The fields are judged as the bytes the MTA sent (``Message.raw_headers``), so fields that are
not valid UTF-8 are judged like any other and nothing here raises on them. Each kind of
finding names a field once however often it occurs, and the reason lists a handful of findings
at most, so a message stuffed with bad fields gets a short reply.

Reply (``action = reject``): ``550 5.7.1 headers: <finding>; <finding>...``.

Outcome: headers.malformed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from mxguard.core.check import Check, Exempt, Services
from mxguard.core.facts import Envelope, Facts, Message, Stage
from mxguard.core.options import INT, SEVERITY, CheckSettings, Severity, option
from mxguard.core.verdict import Verdict, by_severity

NAME = "headers"

OFF, TAG, REJECT = Severity.OFF, Severity.TAG, Severity.REJECT

# RFC 5322 §3.6: the fields a message may carry at most once, as they are usually spelled.
SINGLE_FIELDS: dict[bytes, str] = {
    name.lower().encode(): name
    for name in (
        "Date",
        "From",
        "Sender",
        "Reply-To",
        "To",
        "Cc",
        "Bcc",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Subject",
    )
}

# C0 controls and DEL, except TAB, LF and CR (folding white space).
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Enough to show what is wrong; an SMTP reply line must stay well under 512 octets.
_MAX_LISTED = 5
_NAME_SHOWN = 40


@dataclass(frozen=True, slots=True)
class HeadersSettings(CheckSettings):
    """Options of [headers]."""

    action: str = option(
        TAG,
        "what to do with malformed header fields: off, tag or reject (550 5.7.1; trusted and "
        "authenticated clients are then skipped)",
        SEVERITY,
    )
    max_header_length: int = option(
        "32768",
        "the longest header field allowed, name and value in octets (0: no limit); real fields, "
        "even long Cc lists, stay far below it, and Postfix truncates fields at 102400",
        INT,
    )


def has_smtputf8(envelope: Envelope | None) -> bool:
    """True when MAIL FROM carried the SMTPUTF8 parameter (RFC 6531), in any case."""
    if envelope is None:
        return False
    return any(param.partition("=")[0].strip().upper() == "SMTPUTF8" for param in envelope.esmtp)


def shown_name(name: bytes) -> str:
    """A field name for the log and the reply: printable ASCII only, cut short, never empty."""
    if not name:
        return "(unnamed)"
    text = "".join(chr(b) if 0x20 < b < 0x7F else "?" for b in name[:_NAME_SHOWN])
    return text + "..." if len(name) > _NAME_SHOWN else text


def raw_fields(message: Message) -> tuple[tuple[bytes, bytes], ...]:
    """The fields as bytes; from the text view when a message was made without the raw one."""
    if message.raw_headers or not message.headers:
        return message.raw_headers
    # surrogatepass encodes any str, so even text decoded with surrogateescape cannot raise.
    return tuple(
        (name.encode("utf-8", "surrogatepass"), value.encode("utf-8", "surrogatepass"))
        for name, value in message.headers
    )


def findings(fields: Iterable[tuple[bytes, bytes]], smtputf8: bool, max_length: int) -> list[str]:
    """What is wrong with ``fields``, one line per finding: the missing and duplicated fields
    first, then the faults of single fields in the order they arrived."""
    faults: list[str] = []
    seen: set[tuple[str, bytes]] = set()  # (kind, lower-case name): each is reported once

    def note(kind: str, key: bytes, text: str) -> None:
        if (kind, key) not in seen:
            seen.add((kind, key))
            faults.append(text)

    counts: Counter[bytes] = Counter()
    for name, value in fields:
        # obs-optional (RFC 5322 §4.5.1) lets white space precede the colon.
        key = name.strip(b" \t").lower()
        counts[key] += 1
        if not smtputf8 and not (name.isascii() and value.isascii()):
            note("8bit", key, f"8-bit characters in {shown_name(name)} without SMTPUTF8")
        if _CONTROL.search(name) or _CONTROL.search(value):
            note("control", key, f"control characters in {shown_name(name)}")
        length = len(name) + len(value)
        if max_length and length > max_length:
            note("length", key, f"{shown_name(name)} too long ({length} octets, max {max_length})")

    missing = [] if counts[b"from"] else ["no From field"]
    duplicated = [
        f"{counts[key]} {shown} fields" for key, shown in SINGLE_FIELDS.items() if counts[key] > 1
    ]
    return [*missing, *duplicated, *faults]


def summary(found: list[str]) -> str:
    """The findings as one short reason: the first few, then how many more there are."""
    listed = "; ".join(found[:_MAX_LISTED])
    rest = len(found) - _MAX_LISTED
    return f"{listed}; and {rest} more" if rest > 0 else listed


def check_eom(facts: Facts, settings: HeadersSettings, services: Services) -> Verdict | None:
    """Tag or refuse a message whose header fields are malformed; None when they are fine."""
    message = facts.message
    if settings.action == OFF or message is None:
        return None
    if settings.action == REJECT and facts.connection.ours:
        return None
    found = findings(raw_fields(message), has_smtputf8(facts.envelope), settings.max_header_length)
    if not found:
        return None
    return by_severity(settings.action, NAME, "malformed", summary(found))


CHECK = Check(
    name=NAME,
    summary="tag messages with malformed header fields: no From, duplicates, raw 8-bit, controls",
    settings=HeadersSettings,
    stages={Stage.EOM: check_eom},
    # Tagging holds for everybody; a refusal spares our own clients (see check_eom).
    exempt=frozenset({Exempt.ALLOWED}),
)
