"""Whether a domain is one of a list: exactly, or as a subdomain of an entry."""

from __future__ import annotations

from collections.abc import Iterable


def within(domain: str, domains: Iterable[str]) -> str:
    """The entry of ``domains`` that ``domain`` is or is a subdomain of, else ""."""
    for name in domains:
        if domain == name or domain.endswith("." + name):
            return name
    return ""
