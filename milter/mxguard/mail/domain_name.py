"""RFC 5321 / RFC 6531 domains: host names (U-labels converted to A-labels) and address
literals, such as a HELO argument, an access-list key or the domain of a mailbox.

Total like the rest of the envelope parsers: for any ``str`` input the public functions return
a value and never raise.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import idna

from mxguard.mail.address_error import (
    MAX_ERROR_TEXT_CHARS,
    MAX_INPUT_CHARS,
    AddressError,
    is_control,
)
from mxguard.mail.address_literal import LDH, parse_address_literal

__all__ = ["Domain", "parse_domain", "parse_domain_name"]

# RFC 5321 §4.5.3.1: the limits are in octets, so they are applied to the UTF-8 encoding.
MAX_DOMAIN_OCTETS = 255
MAX_LABEL_OCTETS = 63


@dataclass(frozen=True, slots=True)
class Domain:
    """A host name (lower-case A-labels) or an address literal (``name`` as written)."""

    name: str
    literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None


def parse_domain(text: str) -> Domain | AddressError:
    """Parse an RFC 5321 Domain or address-literal, such as a HELO argument or an access key.

    Domains follow the same rules as the domain of a mailbox (LDH labels, U-labels converted
    to A-labels, no trailing dot); nothing is stripped. Never raises.
    """
    if not isinstance(text, str):
        return AddressError(f"<{type(text).__name__}>", "not a string")
    reason, result = _parse_domain_or_literal(text)
    if result is not None:
        return result
    return AddressError(text[:MAX_ERROR_TEXT_CHARS], reason)


def _parse_domain_or_literal(text: str) -> tuple[str, Domain | None]:
    """Return ("", domain) on success or (reason, None) on failure."""
    # The same guards as for paths, so the idna code never sees huge or unencodable input.
    if len(text) > MAX_INPUT_CHARS:
        return "domain too long", None
    if any("\ud800" <= char <= "\udfff" for char in text):
        return "invalid UTF-8", None
    if any(is_control(char) for char in text):
        return "control character", None
    if text.startswith("["):
        reason, name, literal = parse_address_literal(text)
    else:
        reason, name = parse_domain_name(text)
        literal = None
    if name is None:
        return reason, None
    return "", Domain(name, literal)


def parse_domain_name(text: str) -> tuple[str, str | None]:
    """Validate and normalise a Domain (RFC 5321 sub-domains, RFC 6531 U-labels → A-labels)."""
    if not text:
        return "missing domain", None
    if text.isascii():
        ascii_domain: str | None = text.lower()
    else:
        reason, ascii_domain = _to_a_labels(text)
        if ascii_domain is None:
            return reason, None
    reason = _check_ldh_domain(ascii_domain)
    if reason:
        return reason, None
    return "", ascii_domain


def _to_a_labels(text: str) -> tuple[str, str | None]:
    """Map with UTS 46 and convert U-labels to A-labels (IDNA 2008), label by label.

    Done per label rather than with idna.encode() so that length and empty-label problems
    get the same reasons as for ASCII domains, and so ASCII labels are treated exactly as in
    an all-ASCII domain.
    """
    try:
        # The mapping also lower-cases and turns the ideographic/full-width dots into ".".
        mapped = idna.uts46_remap(text, std3_rules=True)
    except Exception:  # idna raises several types (IDNAError, UnicodeError, ValueError …)
        return "invalid internationalised domain", None
    labels: list[str] = []
    for label in mapped.split("."):
        if not label:
            return "empty label in domain", None
        if label.isascii():
            labels.append(label.lower())
            continue
        try:
            labels.append(idna.alabel(label).decode("ascii"))
        except Exception:  # as above
            return "invalid internationalised domain", None
    return "", ".".join(labels)


def _check_ldh_domain(domain: str) -> str:
    """Return "" if domain is sub-domain *("." sub-domain) in ASCII, else a reason."""
    if len(domain) > MAX_DOMAIN_OCTETS:
        return "domain too long"
    for label in domain.split("."):
        if not label:
            return "empty label in domain"
        if len(label) > MAX_LABEL_OCTETS:
            return "label too long"
        if not all(char in LDH for char in label):
            return "invalid character in domain"
        # sub-domain = Let-dig [Ldh-str], and Ldh-str ends in Let-dig.
        if label[0] == "-" or label[-1] == "-":
            return "hyphen at start or end of label"
    return ""
