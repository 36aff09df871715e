"""The values pymilter's callbacks hand over, in the types the facts hold."""

from __future__ import annotations

import ipaddress
from typing import Any

from mxguard.core.facts import IPAddress, normalise_ip


def ip_from(hostaddr: Any, fallback: str | None) -> IPAddress | None:
    """The client address from the callback's (ip, port, ...) tuple, else from a macro."""
    for candidate in (hostaddr[0] if isinstance(hostaddr, tuple) and hostaddr else None, fallback):
        if candidate:
            try:
                return normalise_ip(
                    ipaddress.ip_address(str(candidate).strip("[]").removeprefix("IPv6:"))
                )
            except ValueError:
                continue
    return None


def as_bytes(value: str | bytes) -> bytes:
    """A callback argument as bytes (pymilter decodes some with surrogateescape)."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", errors="surrogateescape")
