"""dnsbl - refuse clients whose IP address weighted DNS blocklists list.

Stages: the zones are asked, in parallel with the reverse-DNS lookup, as soon as the connection
opens; the decision is given at ``reject_at`` (default the first RCPT, like Postfix's
``smtpd_delay_reject``: the log then shows sender and recipient, and a user on a listed consumer
IP who authenticates on port 587 can still send).

Options: zones (``zone=weight[:codes]``), threshold, reject_at. IPv4 addresses are queried with
reversed octets, IPv6 with the 32 reversed nibbles of RFC 5782.

When the weights of the listing zones reach the threshold: ``550 5.7.1 dnsbl: <ip> listed by
<zone>[: <TXT text>]``. Below it, a listing only tags. A timeout never counts (it is tagged as
could-not-tell); an error answer (127.255.255.0/24) never counts and is logged, at most once a
minute per zone. Trusted and authenticated clients are exempt.

Outcomes: dnsbl.listed, dnsbl.below-threshold, dnsbl.could-not-tell.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mxguard.core.check import Check, Result, Services
from mxguard.core.dns import Query
from mxguard.core.facts import Facts, Stage
from mxguard.core.findings import ListingWeight
from mxguard.core.options import INT, CheckSettings, choice, option
from mxguard.core.verdict import Verdict, reject, tag
from mxguard.mail import listing
from mxguard.mail.listing import ZONES, Answer, Zone

NAME = "dnsbl"
DECISION_STAGES = {
    "connect": Stage.CONNECT,
    "helo": Stage.HELO,
    "mail": Stage.MAIL,
    "rcpt": Stage.RCPT,
}


@dataclass(frozen=True, slots=True)
class DnsblSettings(CheckSettings):
    """Options of [dnsbl]."""

    zones: tuple[Zone, ...] = option(
        "", "blocklists as zone=weight[:answer ranges]; none until the admin lists them", ZONES
    )
    threshold: int = option("1", "refuse when the weights of the listing zones sum to this", INT)
    reject_at: str = option(
        "rcpt", "the stage that refuses: connect, helo, mail or rcpt", choice(*DECISION_STAGES)
    )


def _names(facts: Facts, settings: DnsblSettings) -> dict[str, str]:
    ip = facts.connection.client_ip
    if ip is None:
        return {}
    return {zone.name: listing.ip_query_name(ip, zone.name) for zone in settings.zones}


def ask_at_connect(facts: Facts, settings: DnsblSettings, services: Services) -> Iterable[Query]:
    """Every zone's question, asked as soon as the connection opens."""
    if facts.connection.client_ip is None:
        return []
    return listing.queries(settings.zones, _names(facts, settings))


def decide(facts: Facts, settings: DnsblSettings, services: Services) -> Verdict | None:
    """Refuse when the listing zones' weights reach the threshold."""
    connection = facts.connection
    names = _names(facts, settings)
    if not names:
        return None
    answers = services.dns.lookup_all(listing.queries(settings.zones, names))
    result = listing.score(settings.zones, names, answers)
    listing.warn_unusable(services.notices, NAME, result)
    ip = connection.client_text
    listed = result.listed()
    if listed and result.total >= settings.threshold:
        zone, name = listed[0]
        explanation = listing.explanation(services.dns, name)
        text = f"{ip} listed by {zone.name}" + (f": {explanation}" if explanation else "")
        return reject(NAME, "listed", text)
    if listed:
        zones = ", ".join(z.name for z, _ in listed)
        evidence = f"{ip} listed by {zones}"
        below = tag(
            NAME, "below-threshold", f"{evidence} (weight {result.total} of {settings.threshold})"
        )
        # The weight lets the rhsbl check add this listing to its own total.
        return Result(below, (ListingWeight(result.total, evidence),))
    unknown = result.zones_with(Answer.UNKNOWN)
    if unknown:
        zones = ", ".join(z.name for z in unknown)
        return tag(NAME, "could-not-tell", f"no answer from {zones} for {ip}")
    return None


CHECK = Check(
    name=NAME,
    summary="refuse clients listed by weighted DNS blocklists (IPv4 and IPv6)",
    settings=DnsblSettings,
    stages={stage: decide for stage in DECISION_STAGES.values()},
    prefetch={Stage.CONNECT: ask_at_connect},
    provides=frozenset({ListingWeight}),
    # With no zones listed there is nothing to decide, and no reply to wait for.
    decides_at=lambda settings: {DECISION_STAGES[settings.reject_at]} if settings.zones else (),
)
