"""sender - refuse a MAIL FROM that cannot be parsed, or whose domain cannot receive replies.

Stage: MAIL. Trusted and authenticated clients are exempt; the null sender ``<>`` passes.

A bounce or a reply to the sender must be deliverable, so the MAIL FROM domain must be able to
receive mail: it needs an MX record, or (the RFC 5321 implicit MX) an A or AAAA record. MX, A
and AAAA are asked in parallel. Refused with ``550 5.1.8``:

* sender.nxdomain - the domain does not exist;
* sender.no-address - it exists but has no MX, A or AAAA record (with ``require_mx = yes``:
  no MX record, whatever its addresses);
* sender.null-mx - it publishes a null MX (RFC 7505): it says it accepts no mail, and its A
  records do not count. An MX set whose every exchange is the root "." counts, whatever the
  preference (nothing can be delivered to "."); a domain that also lists a real exchange
  (against RFC 7505) can receive through that one and passes.

A DNS failure gives ``451 4.4.3`` (sender.dns-error) only when the failed lookup could have
changed the answer: an MX found, or an address found without ``require_mx``, is enough to
pass, and NXDOMAIN for one type is enough to refuse, whatever the other lookups did.

A MAIL FROM that does not parse (sender.syntax) gets ``501 5.1.7``, whatever the DNS would say.
An address literal (``user@[192.0.2.1]``) has no domain to look up and passes; whether a
literal is acceptable is a policy question, not a question of deliverability.

Replies: ``550 5.1.8 sender: sender domain <domain> does not exist`` (``has no MX, A or AAAA
record``, ``accepts no mail (null MX)``), ``451 4.4.3 sender: cannot look up sender domain
<domain> now (<failed lookups>)``, ``501 5.1.7 sender: bad sender address syntax (<why>)``.

Outcomes: sender.nxdomain, sender.no-address, sender.null-mx, sender.dns-error, sender.syntax.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from mxguard.core.check import Check, Services
from mxguard.core.dns import DnsResult, Found, NotFound, Query, Unknown
from mxguard.core.facts import Facts, Stage
from mxguard.core.options import BOOL, CheckSettings, option
from mxguard.core.verdict import Replies, Verdict, reject, tempfail
from mxguard.mail.address import Mailbox
from mxguard.mail.address_error import AddressError
from mxguard.mail.textutil import printable

NAME = "sender"


@dataclass(frozen=True, slots=True)
class SenderSettings(CheckSettings):
    """Options of [sender]."""

    require_mx: bool = option(
        "no", "refuse a sender domain that has addresses (A/AAAA) but no MX record", BOOL
    )


class Reach(enum.Enum):
    """Whether mail to a domain can be delivered, from its MX, A and AAAA answers."""

    RECEIVES = "receives"
    NXDOMAIN = "nxdomain"
    NO_ADDRESS = "no-address"
    NULL_MX = "null-mx"
    UNKNOWN = "dns-error"


def is_null_mx(records: tuple[tuple[int, str], ...]) -> bool:
    """True when no MX record names a host: every exchange is the root (RFC 7505)."""
    # Our DNS answers drop an exchange's final dot, but dnspython writes the root name as "."
    # even then; "" (the root with its dot dropped) is accepted as well.
    return bool(records) and all(exchange in ("", ".") for _preference, exchange in records)


def reach(mx: DnsResult, a: DnsResult, aaaa: DnsResult, require_mx: bool) -> Reach:
    """Judge deliverability; UNKNOWN only when a failed lookup could have changed the answer."""
    if isinstance(mx, Found):
        return Reach.NULL_MX if is_null_mx(mx.records) else Reach.RECEIVES
    addresses = () if require_mx else (a, aaaa)
    if any(isinstance(result, Found) for result in addresses):
        return Reach.RECEIVES
    # NXDOMAIN is about the name, not the type: no other type can exist at it either.
    if any(isinstance(r, NotFound) and r.nxdomain for r in (mx, a, aaaa)):
        return Reach.NXDOMAIN
    if any(isinstance(result, Unknown) for result in (mx, *addresses)):
        return Reach.UNKNOWN
    return Reach.NO_ADDRESS


def _questions(domain: str, settings: SenderSettings) -> list[Query]:
    # With require_mx an address cannot change the answer, so it is not asked for.
    types = ("MX",) if settings.require_mx else ("MX", "A", "AAAA")
    return [Query(domain, rdtype) for rdtype in types]


def _answer(answers: Mapping[Query, DnsResult], domain: str, rdtype: str) -> DnsResult:
    # A type not asked for is one that cannot change the answer: treat it as absent.
    return answers.get(Query(domain, rdtype), NotFound(nxdomain=False))


def _failures(answers: Mapping[Query, DnsResult]) -> str:
    return ", ".join(
        f"{query.rdtype} {result.reason}"
        for query, result in answers.items()
        if isinstance(result, Unknown)
    )


def check_mail(facts: Facts, settings: SenderSettings, services: Services) -> Verdict | None:
    """Refuse a malformed MAIL FROM, or a sender domain that cannot receive mail."""
    envelope = facts.envelope
    if envelope is None:
        return None
    sender = envelope.sender
    if isinstance(sender, AddressError):
        return reject(
            NAME,
            "syntax",
            f"bad sender address syntax ({printable(sender.reason, 100)})",
            Replies.BAD_SENDER_SYNTAX,
        )
    if not isinstance(sender, Mailbox) or not sender.domain or sender.literal is not None:
        return None  # the null sender, or an address literal: no domain to look up
    domain = sender.domain
    answers = services.dns.lookup_all(_questions(domain, settings))
    verdict = reach(
        _answer(answers, domain, "MX"),
        _answer(answers, domain, "A"),
        _answer(answers, domain, "AAAA"),
        settings.require_mx,
    )
    if verdict is Reach.RECEIVES:
        return None
    if verdict is Reach.UNKNOWN:
        reason = f"cannot look up sender domain {domain} now ({_failures(answers)})"
        return tempfail(NAME, verdict.value, reason, Replies.TEMPORARY_DNS)
    reasons = {
        Reach.NXDOMAIN: f"sender domain {domain} does not exist",
        Reach.NULL_MX: f"sender domain {domain} accepts no mail (null MX)",
        Reach.NO_ADDRESS: (
            f"sender domain {domain} has no MX record"
            if settings.require_mx
            else f"sender domain {domain} has no MX, A or AAAA record"
        ),
    }
    return reject(NAME, verdict.value, reasons[verdict], Replies.BAD_SENDER_DOMAIN)


CHECK = Check(
    name=NAME,
    summary="refuse a malformed MAIL FROM, or a sender domain that cannot receive replies",
    settings=SenderSettings,
    stages={Stage.MAIL: check_mail},
)
