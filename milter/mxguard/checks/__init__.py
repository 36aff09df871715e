"""The checks, in their default order of evaluation ([milter] order changes it)."""

from __future__ import annotations

from ..check import Check
from . import access, dnsbl, helo, rdns, relay, spf

ALL_CHECKS: tuple[Check, ...] = (
    access.CHECK,
    relay.CHECK,
    helo.CHECK,
    spf.CHECK,
    rdns.CHECK,
    dnsbl.CHECK,
)
