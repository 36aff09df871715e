"""The HELO/EHLO name a client gave, as a host name or address literal (RFC 5321 4.1.1.1)."""

from __future__ import annotations

import functools

from mxguard.mail.address_literal import is_ip_address
from mxguard.mail.domain_name import Domain, parse_domain


@functools.lru_cache(maxsize=1024)  # pure, and asked by several checks per transaction
def parse_helo(text: str) -> Domain | str:
    """The HELO name as a Domain (name normalised, or the literal), or what is wrong with it."""
    if not text:
        return "empty"
    if text.startswith("["):
        literal = parse_domain(text)
        return literal if isinstance(literal, Domain) else literal.reason
    # A fully-qualified name may end in the root's dot; only one.
    name = text.removesuffix(".")
    if is_ip_address(name):
        return "an IP address without [brackets]"
    if name and all(char in "0123456789." for char in name):
        return "a numeric name"
    domain = parse_domain(name)
    if isinstance(domain, Domain):
        return domain
    if "_" in name and name.isascii():
        # Postfix accepts underscores (common in Windows host names); RFC 5321 does not. Any
        # other problem of the name is the one to report.
        relaxed = parse_domain(name.replace("_", "u"))
        return Domain(name.lower(), None) if isinstance(relaxed, Domain) else relaxed.reason
    return domain.reason
