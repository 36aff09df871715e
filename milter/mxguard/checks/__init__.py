"""The checks, in their default order of evaluation ([milter] order changes it)."""

from __future__ import annotations

from ..check import Check
from . import (
    access,
    backscatter,
    dnsbl,
    greylist,
    harvest,
    helo,
    rdns,
    recipients,
    relay,
    rhsbl,
    sender,
    spf,
    spoof,
)

ALL_CHECKS: tuple[Check, ...] = (
    access.CHECK,
    relay.CHECK,
    helo.CHECK,
    spf.CHECK,
    spoof.CHECK,
    sender.CHECK,
    rdns.CHECK,
    dnsbl.CHECK,
    rhsbl.CHECK,
    harvest.CHECK,
    recipients.CHECK,
    backscatter.CHECK,
    greylist.CHECK,
)
