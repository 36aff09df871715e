"""DNS list scoring shared by the IP (DNSBL) and domain (RHSBL) blocklist checks.

A zone is configured as ``zone=weight[:codes]``; ``codes`` restricts which answers count, as
``127.0.0.2-127.0.0.11`` ranges joined by ``|``. What counts as a listing (RFC 5782 and the
operators' conventions):

* only A answers inside 127.0.0.0/8 are listings;
* 127.255.255.0/24 is an error answer (Spamhaus sends it to public resolvers and to users over
  their quota): it never counts, and it means our resolver is being refused;
* an answer outside 127.0.0.0/8 never counts (a wildcarded or expired zone);
* a timeout or SERVFAIL never counts: it is "could not tell".
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mxguard.core.dns import DnsResult, Found, Query, Unknown
from mxguard.core.errors import ValueParseError
from mxguard.core.notices import Notices
from mxguard.core.options import ValueType, joined, parse_domain_name, split_list
from mxguard.mail.textutil import printable

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
ERROR_ANSWERS = ipaddress.ip_network("127.255.255.0/24")


@dataclass(frozen=True, slots=True)
class CodeRange:
    """An inclusive range of answer addresses, e.g. 127.0.0.2-127.0.0.11."""

    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    def __contains__(self, address: ipaddress.IPv4Address) -> bool:
        return self.first <= address <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class Zone:
    """A blocklist zone with its weight and, optionally, the answers that count."""

    name: str
    weight: int = 1
    codes: tuple[CodeRange, ...] = ()

    def counts(self, address: ipaddress.IPv4Address) -> bool:
        """True when ``address`` is a listing answer this zone is configured to count."""
        return not self.codes or any(address in code for code in self.codes)

    def __str__(self) -> str:
        codes = ":" + "|".join(str(code) for code in self.codes) if self.codes else ""
        return f"{self.name}={self.weight}{codes}"


def _parse_code(text: str) -> CodeRange:
    first_text, _, last_text = text.partition("-")
    try:
        first = ipaddress.IPv4Address(first_text.strip())
        last = ipaddress.IPv4Address((last_text or first_text).strip())
    except ValueError:
        raise ValueParseError(text) from None
    if first > last or first not in LOOPBACK or last not in LOOPBACK:
        raise ValueParseError(text)
    return CodeRange(first, last)


def _parse_zone(text: str) -> Zone:
    match = re.fullmatch(r"([^=:\s]+)(?:\s*=\s*(\d+))?(?:\s*:\s*(\S+))?", text.strip())
    if not match:
        raise ValueParseError(text)
    name, weight, codes = match.groups()
    return Zone(
        name=parse_domain_name(name),
        weight=int(weight) if weight else 1,
        codes=tuple(_parse_code(code) for code in codes.split("|")) if codes else (),
    )


ZONES = ValueType(
    "zone list",
    "a comma-separated list of zone=weight, optionally zone=weight:127.0.0.2-127.0.0.11|127.0.0.20",
    lambda text: tuple(_parse_zone(item) for item in split_list(text)),
    joined(str),
)


def ip_query_name(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, zone: str) -> str:
    """The RFC 5782 name for ``ip`` in ``zone``: reversed octets, or 32 reversed nibbles."""
    if isinstance(ip, ipaddress.IPv4Address):
        prefix = ".".join(reversed(str(ip).split(".")))
    else:
        # From the bytes: Python 3.13 writes an IPv4-mapped address's exploded form with its
        # last 32 bits in dotted decimal (::ffff:127.0.0.2), which has no nibbles.
        prefix = ".".join(reversed(ip.packed.hex()))
    return f"{prefix}.{zone}"


class Answer(enum.StrEnum):
    """How one zone answered for one name."""

    LISTED = "listed"
    NOT_LISTED = "not listed"
    ERROR_CODE = "error code"  # 127.255.255.0/24: the resolver is refused
    OUTSIDE_LOOPBACK = "answer outside 127/8"
    UNKNOWN = "could not tell"


def classify(zone: Zone, result: DnsResult) -> Answer:
    """Classify a zone's A answer by the rules in this module's docstring."""
    if isinstance(result, Unknown):
        return Answer.UNKNOWN
    if not isinstance(result, Found):
        return Answer.NOT_LISTED
    addresses = [ipaddress.ip_address(record) for record in result.records]
    if any(address in ERROR_ANSWERS for address in addresses):
        return Answer.ERROR_CODE
    loopback = [a for a in addresses if isinstance(a, ipaddress.IPv4Address) and a in LOOPBACK]
    if not loopback:
        return Answer.OUTSIDE_LOOPBACK if addresses else Answer.NOT_LISTED
    return Answer.LISTED if any(zone.counts(a) for a in loopback) else Answer.NOT_LISTED


@dataclass(frozen=True, slots=True)
class Score:
    """What a set of zones said about one name."""

    answers: tuple[tuple[Zone, str, Answer], ...]  # (zone, queried name, answer)

    @property
    def total(self) -> int:
        """The sum of the weights of the zones that list the name."""
        return sum(zone.weight for zone, _, answer in self.answers if answer is Answer.LISTED)

    def listed(self) -> list[tuple[Zone, str]]:
        """The listing zones with their queried names, heaviest first."""
        hits = [(z, n) for z, n, answer in self.answers if answer is Answer.LISTED]
        return sorted(hits, key=lambda hit: -hit[0].weight)

    def zones_with(self, kind: Answer) -> list[Zone]:
        """The zones that answered ``kind``."""
        return [zone for zone, _, answer in self.answers if answer is kind]


def queries(zones: Iterable[Zone], name_for: Mapping[str, str]) -> list[Query]:
    """The A questions for each zone's name (``name_for`` maps zone name to queried name)."""
    return [Query(name_for[zone.name], "A") for zone in zones]


def score(
    zones: Iterable[Zone], name_for: Mapping[str, str], answers: Mapping[Query, DnsResult]
) -> Score:
    """Classify each zone's answer for its queried name."""
    return Score(
        tuple(
            (zone, name_for[zone.name], classify(zone, answers[Query(name_for[zone.name], "A")]))
            for zone in zones
        )
    )


def warn_unusable(notices: Notices, check: str, result: Score) -> None:
    """Warn about zones whose answers were not counted, at most once a minute per zone.

    Such answers are silent in the verdicts (they never count), so without this the admin
    would not learn that a zone refuses the resolver or has gone wild."""
    for zone in result.zones_with(Answer.ERROR_CODE):
        notices.warn(
            f"{check}-refused:{zone.name}",
            "%s: %s answers with an error code (127.255.255.x, or 127.0.1.255 from a domain "
            "list): it refuses queries from this resolver (a public resolver, or over quota) "
            "or the query itself; its listings are not counted",
            check,
            zone.name,
        )
    for zone in result.zones_with(Answer.OUTSIDE_LOOPBACK):
        notices.warn(
            f"{check}-outside:{zone.name}",
            "%s: %s answers outside 127.0.0.0/8 (wildcarded or expired zone?); not counted",
            check,
            zone.name,
        )


def explanation(dns: Any, name: str) -> str:
    """The zone's TXT text for a listed name, if it publishes one (often a lookup URL)."""
    result = dns.lookup(name, "TXT")
    if isinstance(result, Found) and result.records:
        return printable(result.texts()[0], 200)
    return ""
