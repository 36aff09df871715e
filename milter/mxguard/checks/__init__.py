"""The checks, in their default order of evaluation ([milter] order changes it)."""

from __future__ import annotations

from ..check import Check
from . import (
    access,
    arc,
    backscatter,
    dkim,
    dnsbl,
    greylist,
    harvest,
    headersanity,
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
    sender.CHECK,
    rdns.CHECK,
    dnsbl.CHECK,
    rhsbl.CHECK,
    harvest.CHECK,
    recipients.CHECK,
    backscatter.CHECK,
    greylist.CHECK,
    # End of message: the cheap header checks first, then DKIM and ARC, whose results dmarc
    # reads; spoof comes after them all, reading SPF at MAIL and DKIM at end of message.
    headersanity.CHECK,
    dkim.CHECK,
    arc.CHECK,
    spoof.CHECK,
)
