"""spoof - refuse outside clients that use one of our own domains as the sender.

Stages: MAIL (the envelope sender, after the spf check, whose verdict it reads) and end of
message (the header From, after the dkim and arc checks). Trusted and authenticated clients
are exempt, and so are the clients in ``forwarders``.

A MAIL FROM domain is ours when it is one of ``[milter] local_domains`` or ``hostnames``, or a
subdomain of one (``ceo@mail.example.org`` is as much a forgery of example.org as
``ceo@example.org``; a subdomain that really sends from outside publishes SPF for it). Such a
sender is accepted from an outside client only when the spf check found ``pass`` for that MAIL
FROM identity. Anything else is refused: fail, softfail, neutral, none (a local domain that
publishes no SPF record at all), and no SPF verdict at all (the spf check disabled, or
skipping the client). SPF temperror, or an spf check that failed, is "could not tell": 451
4.4.3, since SPF might have passed. A passing HELO identity does not count: the HELO name is the
client's, not the sender's.

The spf check's ``trusted_forwarders`` are *not* exempt here: that list says "do not judge SPF
from these hosts", not "these hosts may send as us", and a forwarder relays whatever forged mail
it accepted. A forwarder that brings our own users' mail back (an outside alias that forwards
to us and keeps the envelope sender) goes in ``forwarders``, a separate and deliberate choice.

The null sender ``<>`` is not a spoof; a MAIL FROM that does not parse and an address literal
(``user@[192.0.2.1]``) are left to the sender check. With no local domains and no host names
configured there is nothing to protect, and the check says nothing.

Header From (end of message): a From whose author domain is one of ``[milter]
local_domains`` or ``hostnames`` (or a subdomain of one) is accepted from an outside client
only with a passing DKIM signature aligned with it (the same organizational domain, as DMARC's
relaxed alignment). SPF does not count here: it vouches for the envelope, not for the From a
reader sees. A From that does not parse or holds several addresses is not aligned with anything
(the OpenDMARC CVE class: a verifier reads one address, the reader another); it is refused when
any address in it names our domain. A mailing list that an ARC sealer in ``[arc]
trusted_sealers`` vouches for (our user's post coming back from the list, its signature broken
by a subject tag) is accepted. When an aligned signature could not be checked now (its key
lookup failed), or the dkim or arc check failed, the answer is 451 4.4.3, not a refusal.

Replies: ``550 5.7.1 spoof: <sender> uses our domain <domain> from outside (<ip>, SPF
<result>)`` (or ``no SPF pass`` when there is no SPF result for the sender), and ``550 5.7.1
spoof: From: <address> uses our domain <domain> from outside (<ip>) without an aligned DKIM
signature``.

Outcomes: spoof.local-domain, spoof.header-from, spoof.could-not-tell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mxguard.core.check import Check, Services
from mxguard.core.facts import Connection, Facts, Stage
from mxguard.core.findings import (
    CouldNotTell,
    DkimSignatures,
    SpfIdentity,
    SpfResults,
    TrustedSealer,
)
from mxguard.core.options import NETWORKS, CheckSettings, IPNetwork, option
from mxguard.core.verdict import Verdict, deferred, reject
from mxguard.mail import dmarc
from mxguard.mail.address import Mailbox
from mxguard.mail.author import Author, author
from mxguard.mail.textutil import printable

NAME = "spoof"


@dataclass(frozen=True, slots=True)
class SpoofSettings(CheckSettings):
    """Options of [spoof]."""

    forwarders: tuple[IPNetwork, ...] = option(
        "",
        "forwarders that may send as our domains without an SPF pass (they keep the sender); "
        "[spf] trusted_forwarders do not count here",
        NETWORKS,
    )


def _is_forwarder(connection: Connection, settings: SpoofSettings) -> bool:
    ip = connection.client_ip
    return ip is not None and any(ip in network for network in settings.forwarders)


def _spf_of(facts: Facts, domain: str) -> SpfIdentity | CouldNotTell | None:
    """The SPF result for the MAIL FROM identity in ``domain``, None when there is none."""
    found = facts.findings.get(SpfResults)
    if not isinstance(found, SpfResults):
        return found
    mailfrom = found.mailfrom
    return mailfrom if mailfrom is not None and mailfrom.domain == domain else None


def check_mail(facts: Facts, settings: SpoofSettings, services: Services) -> Verdict | None:
    """Refuse an outside client using our domain in MAIL FROM unless SPF passed for it."""
    connection, envelope = facts.connection, facts.envelope
    if envelope is None or _is_forwarder(connection, settings):
        return None
    sender = envelope.sender
    if not isinstance(sender, Mailbox) or not sender.domain or sender.literal is not None:
        return None
    ours = services.site.our_domain(sender.domain)
    if not ours:
        return None
    spf = _spf_of(facts, sender.domain)
    shown = f"{printable(sender.address, 100)} uses our domain {ours} from outside"
    if isinstance(spf, CouldNotTell) or (spf is not None and spf.result == "temperror"):
        # SPF might have passed: ask again later rather than refuse our own provider's mail.
        why = spf.reason if isinstance(spf, CouldNotTell) else "SPF temperror"
        return deferred(
            NAME, "could-not-tell", f"{shown} ({connection.client_text}): cannot tell now ({why})"
        )
    if spf is not None and spf.result == "pass":
        return None
    evidence = f"SPF {spf.result}" if spf else "no SPF pass"
    return reject(NAME, "local-domain", f"{shown} ({connection.client_text}, {evidence})")


# "@example.org" followed by something that cannot continue a domain name.
_DOMAIN_END = r"(?![a-z0-9.-])"


def _named_in_from(values: Iterable[str], ours: Iterable[str]) -> str:
    """The first of ``ours`` that a From value names as an address domain (or a subdomain of)."""
    text = " ".join(values).lower()
    for domain in ours:
        if re.search(rf"[@.]{re.escape(domain)}{_DOMAIN_END}", text):
            return domain
    return ""


def check_eom(facts: Facts, settings: SpoofSettings, services: Services) -> Verdict | None:
    """Refuse an outside client using our domain in the header From without aligned DKIM."""
    connection, message = facts.connection, facts.message
    if message is None or _is_forwarder(connection, settings):
        return None
    site = services.site
    domains = (*site.local_domains, *site.hostnames)
    sealer = facts.findings.get(TrustedSealer)
    if not domains or isinstance(sealer, TrustedSealer):
        return None
    found = author(message)
    untold: list[str] = []
    if isinstance(found, Author):
        ours = site.our_domain(found.domain)
        if not ours:
            return None
        signatures = facts.findings.get(DkimSignatures)
        if isinstance(signatures, DkimSignatures):
            if any(dmarc.aligned(d, found.domain, "r") for d in signatures.passing()):
                return None
            untold = [d for d in signatures.untold() if dmarc.aligned(d, found.domain, "r")]
        elif isinstance(signatures, CouldNotTell):
            untold = [signatures.reason]
        shown = printable(found.address, 100)
        evidence = "without an aligned DKIM signature"
    else:
        ours = _named_in_from(message.values("From"), domains)
        if not ours:
            return None
        shown, evidence = "(malformed)", f"in a From that cannot be verified: {found}"
    claim = f"From: {shown} uses our domain {ours} from outside ({connection.client_text})"
    if untold or isinstance(sealer, CouldNotTell):
        # An aligned signature, or a trusted sealer, might have vouched for it.
        what = ", ".join(untold) if untold else "ARC"
        return deferred(NAME, "could-not-tell", f"{claim}: cannot tell now ({what})")
    return reject(NAME, "header-from", f"{claim} {evidence}")


CHECK = Check(
    name=NAME,
    summary="refuse outside clients using our own domains as sender without SPF or DKIM",
    settings=SpoofSettings,
    stages={Stage.MAIL: check_mail, Stage.EOM: check_eom},
    needs=frozenset({SpfResults, DkimSignatures, TrustedSealer}),
)
