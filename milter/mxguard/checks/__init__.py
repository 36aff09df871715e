"""The checks, in their default order of evaluation ([milter] order changes it)."""

from __future__ import annotations

from mxguard.checks import (
    access,
    arc,
    backscatter,
    dkim,
    dkim_sign,
    dmarc,
    dnsbl,
    greylist,
    harvest,
    headers,
    helo,
    rdns,
    received,
    recipients,
    relay,
    rhsbl,
    sender,
    spf,
    spoof,
    submission,
)
from mxguard.core.check import Check

ALL_CHECKS: tuple[Check, ...] = (
    access.CHECK,
    relay.CHECK,
    helo.CHECK,
    submission.CHECK,
    spf.CHECK,
    sender.CHECK,
    rdns.CHECK,
    dnsbl.CHECK,
    rhsbl.CHECK,
    harvest.CHECK,
    recipients.CHECK,
    backscatter.CHECK,
    greylist.CHECK,
    # End of message: DKIM and ARC first, whose results the others read (received excuses
    # our own hops in mail we signed; dmarc and spoof need an aligned signature); spoof comes
    # after them all, reading SPF at MAIL and DKIM at end of message.
    headers.CHECK,
    dkim.CHECK,
    arc.CHECK,
    received.CHECK,
    dmarc.CHECK,
    spoof.CHECK,
    dkim_sign.CHECK,
)
