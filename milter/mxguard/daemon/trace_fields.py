"""The header fields mxguard writes at end of message, and which incoming ones it removes.

* ``Authentication-Results`` (RFC 8601, written with authres): one field with every method that
  ran, or ``none``.
* ``X-MXGuard``: what tagged the message, and in monitor mode what would have been refused.

Incoming fields of either name that claim our authserv-id are forgeries and are removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import authres

from mxguard import __version__
from mxguard.core.verdict import Action, Verdict
from mxguard.mail.textutil import printable

AUTH_RESULTS = "Authentication-Results"
TRACE = "X-MXGuard"

# authserv-id is the first token, after optional comments (RFC 8601 section 2.2).
_FIRST_TOKEN = re.compile(r"\s*(?:\([^)]*\)\s*)*([^\s;()]+)")


def claims_authserv_id(value: str, authserv_id: str) -> bool:
    """True when a header value's authserv-id is ours (compared case-insensitively)."""
    match = _FIRST_TOKEN.match(value)
    return bool(match) and match.group(1).lower() == authserv_id.lower()


def authentication_results(authserv_id: str, verdicts: Iterable[Verdict]) -> str:
    """The value of our Authentication-Results field for these verdicts."""
    results = [
        authres.AuthenticationResult(
            method=auth.method,
            result=auth.result,
            reason=auth.reason or None,
            properties=[
                authres.AuthenticationResultProperty(type=ptype, name=name, value=value)
                for ptype, name, value in auth.properties
            ],
        )
        for verdict in verdicts
        for auth in verdict.auth
    ]
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results)
    return header.header_value()


def trace_header(authserv_id: str, verdicts: Iterable[Verdict]) -> str:
    """The value of X-MXGuard: ``<id>; <check>=<action> (<reason>); ...`` or ``<id>; none``."""
    parts = []
    for verdict in verdicts:
        if verdict.action not in (Action.TAG, Action.ALLOW):
            continue
        label = f"would-{verdict.monitored}" if verdict.monitored else verdict.action
        parts.append(f"{verdict.outcome}={label} ({printable(verdict.reason, 120)})")
    body = "; ".join(parts) if parts else "none"
    return f"{authserv_id}; {body}; version={__version__}"


def forged_fields(headers: Iterable[tuple[str, str]], authserv_id: str) -> list[tuple[str, int]]:
    """(name, index) of incoming fields that claim our authserv-id; index counts per name from 1,
    as smfi_chgheader expects."""
    seen: dict[str, int] = {}
    forged = []
    for name, value in headers:
        key = name.lower()
        if key not in (AUTH_RESULTS.lower(), TRACE.lower()):
            continue
        seen[key] = seen.get(key, 0) + 1
        if claims_authserv_id(value, authserv_id):
            forged.append((name, seen[key]))
    return forged
