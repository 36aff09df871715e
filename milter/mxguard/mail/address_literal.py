"""RFC 5321 address literals (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``, ``[tag:content]``) and
the IP address text inside them.

Total like the rest of the envelope parsers: any ``str`` gives a result, nothing raises.
"""

from __future__ import annotations

import ipaddress
import string

__all__ = ["LDH", "is_ip_address", "parse_address_literal"]

_LET_DIG = frozenset(string.ascii_letters + string.digits)
# Letters, digits and hyphen: the characters of a domain label and of a Standardized-tag.
LDH = _LET_DIG | {"-"}
_HEX = frozenset(string.hexdigits)
_IPV6_CHARS = _HEX | {":", "."}
_DIGITS = frozenset(string.digits)


def is_ip_address(text: str) -> bool:
    """True when ``text`` is a bare IPv4 or IPv6 address (no brackets), e.g. a sloppy HELO."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_address_literal(
    text: str,
) -> tuple[str, str | None, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """Parse "[" ( IPv4 / "IPv6:" IPv6 / Standardized-tag ":" dcontent ) "]".

    The domain returned is the literal as written, brackets included.
    """
    if not text.endswith("]") or len(text) < 2:
        if "]" in text:
            return "text after address literal", None, None
        return "unbalanced bracket in address literal", None, None
    body = text[1:-1]
    if "[" in body or "]" in body:
        return "invalid address literal", None, None

    if ":" not in body:
        ipv4 = _parse_ipv4(body)
        if ipv4 is not None:
            return "", text, ipv4
        if body and all(char in _DIGITS or char == "." for char in body):
            return "invalid IPv4 literal", None, None
        return "invalid address literal", None, None

    tag, _, content = body.partition(":")
    # ABNF strings are case-insensitive, so "ipv6:" is the IPv6 tag too.
    if tag.lower() == "ipv6":
        ipv6 = _parse_ipv6(content)
        if ipv6 is None:
            return "invalid IPv6 literal", None, None
        return "", text, ipv6
    if _is_general_literal(tag, content):
        return "", text, None
    return "invalid address literal", None, None


def _is_general_literal(tag: str, content: str) -> bool:
    """Standardized-tag ":" 1*dcontent, where Standardized-tag is an Ldh-str."""
    if not tag or not all(char in LDH for char in tag) or tag[-1] == "-":
        return False
    # dcontent = %d33-90 / %d94-126: printable ASCII except "[", "\" and "]".
    return bool(content) and all("!" <= char <= "~" and char not in "[\\]" for char in content)


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """Parse Snum 3("." Snum) with Snum = 1*3DIGIT in 0-255 (leading zeros allowed)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not 1 <= len(part) <= 3 or not all(char in _DIGITS for char in part):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return ipaddress.IPv4Address(value)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address | None:
    """Parse IPv6-full / IPv6-comp / IPv6v4-full / IPv6v4-comp exactly as RFC 5321 §4.1.3.

    Done by hand rather than with ipaddress because RFC 5321 is stricter: "::" must stand for
    at least two zero groups, and zone ids ("%eth0") are not part of the grammar.
    """
    if not text or not all(char in _IPV6_CHARS for char in text):
        return None

    tail_ipv4: ipaddress.IPv4Address | None = None
    if "." in text:
        cut = text.rfind(":")
        if cut < 0:
            return None
        tail_ipv4 = _parse_ipv4(text[cut + 1 :])
        if tail_ipv4 is None:
            return None
        text = text[: cut + 1]
        if not text.endswith("::"):
            text = text[:-1]
    ipv4_groups = 2 if tail_ipv4 is not None else 0

    if ":::" in text or text.count("::") > 1:
        return None
    if "::" in text:
        head, _, tail = text.partition("::")
        head_groups = head.split(":") if head else []
        tail_groups = tail.split(":") if tail else []
        explicit = len(head_groups) + len(tail_groups) + ipv4_groups
        if explicit > 6:
            return None
        groups = head_groups + ["0"] * (8 - explicit) + tail_groups
    else:
        groups = text.split(":") if text else []
        if len(groups) + ipv4_groups != 8:
            return None

    value = 0
    for group in groups:
        # Only hex digits: a dot left before an IPv4 tail ("1.2::1.2.3.4") must fail, not raise.
        if not 1 <= len(group) <= 4 or not all(char in _HEX for char in group):
            return None
        value = value << 16 | int(group, 16)
    if tail_ipv4 is not None:
        value = value << 32 | int(tail_ipv4)
    return ipaddress.IPv6Address(value)
