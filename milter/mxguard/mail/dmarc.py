"""DMARC (RFC 7489) without I/O: the record, the organizational domain, alignment, policy
discovery over a TXT lookup function, and the result for one message.

The organizational domain comes from the Public Suffix List that the publicsuffixlist package
ships (nothing is downloaded). Policy discovery follows section 6.6.3: ``_dmarc.<author
domain>``, then ``_dmarc.<organizational domain>`` when the first has no DMARC record; more
than one record means no DMARC, a broken one a permerror, a DNS failure a temperror.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from publicsuffixlist import PublicSuffixList

from mxguard.mail.author import normalise_domain
from mxguard.mail.textutil import printable

POLICIES = ("none", "quarantine", "reject")
# Section 6.6.4: a message that pct leaves out of the sample gets the next lower policy.
_LOWER = {"reject": "quarantine", "quarantine": "none", "none": "none"}
# The tag name is case-insensitive, the value is not: the ABNF spells DMARC1 as %x44 %x4d ...
_VERSION = re.compile(r"[vV][ \t]*=[ \t]*DMARC1[ \t]*\Z")
_PCT = re.compile(r"\d{1,3}\Z")
# RFC 3986 URI, loosely: a scheme and something after it (section 6.6.3 asks only whether
# rua holds a "syntactically valid reporting URI"); "!10m" size limits are allowed after it.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s!]+(?:![0-9]+[kmgt]?)?\Z", re.IGNORECASE)


class DmarcRecordError(ValueError):
    """A TXT record that is not a usable DMARC policy record."""


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A parsed DMARC record: policies lower-case, alignment modes "r" or "s"; the reporting
    tags are kept as the text the domain published."""

    p: str
    sp: str
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    fo: str = "0"
    rf: str = "afrf"
    ri: str = "86400"
    rua: str = ""
    ruf: str = ""


def is_dmarc_record(text: str) -> bool:
    """True when a TXT record starts with the v=DMARC1 tag (others at _dmarc are ignored)."""
    return bool(_VERSION.match(text.split(";", 1)[0].strip()))


def _has_report_uri(rua: str) -> bool:
    return any(_URI.match(uri.strip()) for uri in rua.split(","))


def parse_record(text: str) -> DmarcRecord:
    """Parse a DMARC TXT record (RFC 7489 section 6.3); raises DmarcRecordError."""
    if not text.strip():
        raise DmarcRecordError("empty record")
    first, *rest = text.split(";")
    if not _VERSION.match(first.strip()):
        raise DmarcRecordError("does not start with v=DMARC1")
    tags: dict[str, str] = {}
    for spec in rest:
        name, equals, value = spec.partition("=")
        name = name.strip().lower()
        # Unknown tags are ignored (section 6.3), and so is anything that is no tag at all;
        # the first of a repeated tag counts.
        if equals and name and name not in tags:
            tags[name] = value.strip()
    p = tags.get("p", "").lower()
    sp = tags.get("sp", p).lower()
    if p not in POLICIES or sp not in POLICIES:
        # Section 6.6.3: without a valid p (or with an invalid sp) the record still asks for
        # reports when rua holds a valid URI, and counts as p=none; else it is no record.
        if not _has_report_uri(tags.get("rua", "")):
            problem = "no valid p= tag" if p not in POLICIES else "invalid sp= tag"
            raise DmarcRecordError(problem)
        p = sp = "none"
    # Section 6.6.3 discards a record only for its v, p and sp; a bad value of any other tag
    # is ignored and its default used, so the domain's policy still applies.
    pct = tags.get("pct", "100")
    return DmarcRecord(
        p=p,
        sp=sp,
        adkim="s" if tags.get("adkim", "").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "").lower() == "s" else "r",
        pct=int(pct) if _PCT.match(pct) and int(pct) <= 100 else 100,
        fo=tags.get("fo", "0"),
        rf=tags.get("rf", "afrf"),
        ri=tags.get("ri", "86400"),
        rua=tags.get("rua", ""),
        ruf=tags.get("ruf", ""),
    )


@functools.cache
def _suffix_list() -> PublicSuffixList:
    """The one Public Suffix List of the process, parsed at first use (it takes a moment)."""
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The registrable domain of ``domain`` (RFC 7489 section 3.2, via the PSL); a public
    suffix, or a name the list cannot place, is its own organizational domain."""
    name = domain[:-1] if domain.endswith(".") else domain
    name = name.lower()
    return _suffix_list().privatesuffix(name) or name


def aligned(identifier: str, author_domain: str, mode: str) -> bool:
    """True when an authenticated domain aligns with the author domain: equal in strict mode
    ("s"), with the same organizational domain in relaxed mode ("r"); case-insensitive."""
    strict = mode.lower() in ("s", "strict")
    if not strict and mode.lower() not in ("r", "relaxed"):
        raise ValueError(f"alignment mode {mode!r}")
    first, second = normalise_domain(identifier), normalise_domain(author_domain)
    if first is None or second is None:
        return False  # a name with empty labels (".example.org") is no domain to align
    if strict:
        return first == second
    return organizational_domain(first) == organizational_domain(second)


@dataclass(frozen=True, slots=True)
class Discovery:
    """What policy discovery found: ``status`` is found, none, temperror or permerror;
    ``domain`` is where the record was published (or where discovery stopped)."""

    status: str
    domain: str
    record: DmarcRecord | None = None
    reason: str = ""


# The TXT texts published at a name; an empty sequence when there are none, None when the
# DNS could not tell.
TxtLookup = Callable[[str], Sequence[str] | None]


def policy_names(author_domain: str) -> tuple[str, ...]:
    """The names discovery may ask for: _dmarc at the author and organizational domains."""
    domains = dict.fromkeys((author_domain, organizational_domain(author_domain)))
    return tuple(f"_dmarc.{domain}" for domain in domains)


def discover(author_domain: str, txt: TxtLookup) -> Discovery:
    """Find the DMARC record for ``author_domain`` (RFC 7489 section 6.6.3) through ``txt``."""
    for name in policy_names(author_domain):
        domain = name.removeprefix("_dmarc.")
        texts = txt(name)
        if texts is None:
            return Discovery("temperror", domain, reason=f"cannot look up {name} now")
        records = [text for text in texts if is_dmarc_record(text)]
        if len(records) > 1:
            return Discovery("none", domain, reason=f"{len(records)} DMARC records at {name}")
        if records:
            try:
                record = parse_record(records[0])
            except DmarcRecordError as error:
                return Discovery("permerror", domain, reason=f"{name}: {error}")
            return Discovery("found", domain, record)
    return Discovery("none", author_domain, reason=f"no DMARC record for {author_domain}")


@dataclass(frozen=True, slots=True)
class DmarcResult:
    """The DMARC result for one message.

    ``policy`` is the policy to apply (none unless the result is fail); ``requested`` is the
    record's p, or its sp when the record came from the organizational domain of a subdomain
    (``policy_tag`` says which); ``sampled`` is False when pct left the message out of the
    sample, so that ``policy`` is one step below ``requested``.
    """

    result: str
    header_from: str
    policy: str = "none"
    requested: str = ""
    policy_tag: str = ""
    spf_aligned: str = ""  # the SPF-authenticated domain that aligned, if any
    dkim_aligned: str = ""  # the d= of a passing signature that aligned, if any
    sampled: bool = True
    pct: int = 100
    record_domain: str = ""
    reason: str = ""


def evaluate(
    author_domain: str,
    discovery: Discovery,
    spf_domains: Iterable[str],
    dkim_domains: Iterable[str],
    sample: int,
    untold: Iterable[tuple[str, str]] = (),
) -> DmarcResult:
    """The DMARC result for ``author_domain`` given discovery and the domains that passed SPF
    and DKIM; ``sample`` (0..99) is drawn by the caller and is in the sample when < pct.

    ``untold`` are the ("spf" or "dkim", domain) identifiers that could not be checked now:
    when one of them would align, a message that would fail is a temperror instead (it
    might pass), with the policy it would have had."""
    if discovery.status != "found" or discovery.record is None:
        return DmarcResult(
            discovery.status,
            author_domain,
            record_domain=discovery.domain,
            reason=printable(discovery.reason, 200),
        )
    record = discovery.record
    # sp applies to subdomains of the domain queried, not to that domain itself (section 6.3).
    subdomain = discovery.domain != author_domain
    requested = record.sp if subdomain else record.p
    spf = next((d for d in spf_domains if aligned(d, author_domain, record.aspf)), "")
    dkim = next((d for d in dkim_domains if aligned(d, author_domain, record.adkim)), "")
    found = DmarcResult(
        "fail",
        author_domain,
        requested=requested,
        policy_tag="sp" if subdomain else "p",
        pct=record.pct,
        record_domain=discovery.domain,
    )
    if spf or dkim:
        return replace(found, result="pass", spf_aligned=spf, dkim_aligned=dkim)
    sampled = sample < record.pct
    failed = replace(found, policy=requested if sampled else _LOWER[requested], sampled=sampled)
    modes = {"spf": record.aspf, "dkim": record.adkim}
    for method, domain in untold:
        if aligned(domain, author_domain, modes[method]):
            reason = f"{method.upper()} could not be checked for {domain}, which would align"
            return replace(failed, result="temperror", reason=printable(reason, 200))
    return failed
