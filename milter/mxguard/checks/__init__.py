"""The checks, in their default order of evaluation ([milter] order changes it)."""

from __future__ import annotations

from ..check import Check
from . import dnsbl, relay

ALL_CHECKS: tuple[Check, ...] = (
    relay.CHECK,
    dnsbl.CHECK,
)
