"""rhsbl - refuse mail whose MAIL FROM or HELO domain weighted domain blocklists list.

Stages: the zones are asked at MAIL, when the sender is known, for the MAIL FROM domain and
the HELO name at once (``<domain>.<zone>``, A); the decision is given at ``reject_at`` (default
the first RCPT, like the dnsbl check). With ``reject_at = helo`` only the HELO name is checked,
and SMTP AUTH is not known yet, so an authenticated client is not exempt there.

Options: zones (``zone=weight[:codes]``), threshold, reject_at; the same rules as [dnsbl]
(``listing.py``): only A answers in 127.0.0.0/8 count, a timeout never counts (tagged
could-not-tell, never refused), an error answer never counts and is logged at most once a
minute per zone. Besides 127.255.255.0/24, a domain list's 127.0.1.255 is an error answer
(Spamhaus DBL's "IP queries prohibited"). A zone counts once, whether it lists one domain or
both.

Which names are asked: the MAIL FROM domain (not an address literal) and the HELO name when it
is a host name; a name without a dot or with an all-numeric last label cannot be a registered
domain and is not asked, nor is a query name longer than 253 characters.

Shared total: when the dnsbl check (which runs first) tagged the client below its threshold,
its weight is added to this check's total, so a client IP and a sender domain that are each
a little suspicious can be refused together. Only listings seen before this check decides
count: give both checks the same ``reject_at`` (or the dnsbl an earlier one) to share. A
refusal needs at least one listing here; the dnsbl's weight alone never refuses here.

When the total reaches the threshold: ``550 5.7.1 rhsbl: <domain> listed by <zone>[: <TXT>]``,
followed by ``(with dnsbl: <ip> listed by <zone>)`` when the dnsbl's weight was needed. Below
it, a listing only tags. Trusted and authenticated clients are exempt.

Outcomes: rhsbl.listed, rhsbl.below-threshold, rhsbl.could-not-tell.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mxguard.core.check import Check, Services
from mxguard.core.dns import DnsResult, Found, Query
from mxguard.core.facts import Facts, Stage
from mxguard.core.findings import ListingWeight
from mxguard.core.options import INT, CheckSettings, choice, option
from mxguard.core.verdict import Verdict, reject, tag
from mxguard.mail import listing
from mxguard.mail.address import Mailbox
from mxguard.mail.domain_name import Domain
from mxguard.mail.heloname import parse_helo
from mxguard.mail.listing import ZONES, Answer, Score, Zone

NAME = "rhsbl"
DECISION_STAGES = {"helo": Stage.HELO, "mail": Stage.MAIL, "rcpt": Stage.RCPT}
DOMAIN_LIST_ERROR = ipaddress.IPv4Address("127.0.1.255")
MAX_NAME = 253  # octets of a domain name in presentation form, without the final dot


@dataclass(frozen=True, slots=True)
class RhsblSettings(CheckSettings):
    """Options of [rhsbl]."""

    zones: tuple[Zone, ...] = option(
        "",
        "domain blocklists as zone=weight[:answer ranges]; none until the admin lists them",
        ZONES,
    )
    threshold: int = option(
        "1",
        "refuse when the weights of the listing zones (plus a dnsbl listing below its own "
        "threshold) sum to this",
        INT,
    )
    reject_at: str = option(
        "rcpt", "the stage that refuses: helo, mail or rcpt", choice(*DECISION_STAGES)
    )


@dataclass(frozen=True, slots=True)
class Ask:
    """One question: a domain in a zone."""

    zone: Zone
    domain: str
    name: str  # <domain>.<zone>


def listable(name: str) -> bool:
    """True when ``name`` can be a registered domain: it has a dot, and a non-numeric TLD."""
    labels = name.split(".")
    return len(labels) > 1 and not labels[-1].isdigit()


def domains(facts: Facts) -> list[str]:
    """The domains to look up: the MAIL FROM domain, then the HELO name, each once."""
    found = []
    envelope = facts.envelope
    if envelope is not None:
        sender = envelope.sender
        if isinstance(sender, Mailbox) and sender.domain and sender.literal is None:
            found.append(sender.domain)
    helo = parse_helo(facts.connection.helo)
    if isinstance(helo, Domain) and helo.literal is None:
        found.append(helo.name)
    return [name for name in dict.fromkeys(found) if listable(name)]


def asks(facts: Facts, settings: RhsblSettings) -> list[Ask]:
    """Every (zone, domain) question whose name fits in the DNS."""
    return [
        Ask(zone, domain, f"{domain}.{zone.name}")
        for domain in domains(facts)
        for zone in settings.zones
        if len(domain) + 1 + len(zone.name) <= MAX_NAME
    ]


def ask_at_mail(facts: Facts, settings: RhsblSettings, services: Services) -> Iterable[Query]:
    """Every question, asked as soon as MAIL FROM is known."""
    if settings.reject_at == "helo":
        return []
    return [Query(ask.name, "A") for ask in asks(facts, settings)]


def classify(zone: Zone, result: DnsResult) -> Answer:
    """The DNSBL rules of ``listing``, plus the domain lists' own error answer."""
    if isinstance(result, Found) and any(
        ipaddress.ip_address(record) == DOMAIN_LIST_ERROR for record in result.records
    ):
        return Answer.ERROR_CODE
    return listing.classify(zone, result)


def score(questions: list[Ask], answers: Mapping[Query, DnsResult]) -> Score:
    """Classify each zone's answer for each domain."""
    return Score(
        tuple(
            (ask.zone, ask.name, classify(ask.zone, answers[Query(ask.name, "A")]))
            for ask in questions
        )
    )


def own_weight(result: Score) -> int:
    """The sum of the weights of the zones that list any of the domains, each zone once."""
    zones = {zone.name: zone.weight for zone, _name in result.listed()}
    return sum(zones.values())


def decide(facts: Facts, settings: RhsblSettings, services: Services) -> Verdict | None:
    """Refuse when the listing zones' weights, plus a dnsbl listing, reach the threshold."""
    questions = asks(facts, settings)
    if not questions:
        return None
    answers = services.dns.lookup_all(Query(ask.name, "A") for ask in questions)
    result = score(questions, answers)
    listing.warn_unusable(services.notices, NAME, result)
    domain_of = {ask.name: ask.domain for ask in questions}
    listed = result.listed()
    own = own_weight(result)
    dnsbl = facts.findings.known(ListingWeight)
    total = own + (dnsbl.weight if dnsbl else 0)
    if listed and total >= settings.threshold:
        zone, name = listed[0]
        explanation = listing.explanation(services.dns, name)
        text = f"{domain_of[name]} listed by {zone.name}"
        text += f": {explanation}" if explanation else ""
        if dnsbl is not None and own < settings.threshold:
            text += f" (with dnsbl: {dnsbl.evidence})"
        return reject(NAME, "listed", text)
    if listed:
        found = ", ".join(f"{domain_of[name]} listed by {zone.name}" for zone, name in listed)
        shared = f", with dnsbl {dnsbl.weight}" if dnsbl else ""
        below = tag(
            NAME,
            "below-threshold",
            f"{found} (weight {total} of {settings.threshold}{shared})",
        )
        return below
    unknown = dict.fromkeys(zone.name for zone in result.zones_with(Answer.UNKNOWN))
    if unknown:
        names = ", ".join(dict.fromkeys(ask.domain for ask in questions))
        return tag(NAME, "could-not-tell", f"no answer from {', '.join(unknown)} for {names}")
    return None


CHECK = Check(
    name=NAME,
    summary="refuse MAIL FROM and HELO domains listed by weighted domain blocklists",
    settings=RhsblSettings,
    stages={stage: decide for stage in DECISION_STAGES.values()},
    prefetch={Stage.MAIL: ask_at_mail},
    needs=frozenset({ListingWeight}),
    # With no zones listed there is nothing to decide, and no reply to wait for.
    decides_at=lambda settings: {DECISION_STAGES[settings.reject_at]} if settings.zones else (),
)
