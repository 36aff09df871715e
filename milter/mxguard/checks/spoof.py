"""spoof - refuse outside clients that use one of our own domains in MAIL FROM without SPF.

Stage: MAIL, after the spf check, whose verdict it reads. Trusted and authenticated clients
are exempt, and so are the clients in ``forwarders``.

A MAIL FROM domain is ours when it is one of ``[milter] local_domains`` or ``hostnames``, or a
subdomain of one (``ceo@mail.example.org`` is as much a forgery of example.org as
``ceo@example.org``; a subdomain that really sends from outside publishes SPF for it). Such a
sender is accepted from an outside client only when the spf check found ``pass`` for that MAIL
FROM identity. Anything else is refused: fail, softfail, neutral, none (a local domain that
publishes no SPF record at all), temperror, and no SPF verdict at all (the spf check disabled,
or skipping the client). A passing HELO identity does not count: the HELO name is the
client's, not the sender's.

The spf check's ``trusted_forwarders`` are *not* exempt here: that list says "do not judge SPF
from these hosts", not "these hosts may send as us", and a forwarder relays whatever forged mail
it accepted. A forwarder that brings our own users' mail back (an outside alias that forwards
to us and keeps the envelope sender) goes in ``forwarders``, a separate and deliberate choice.

The null sender ``<>`` is not a spoof; a MAIL FROM that does not parse and an address literal
(``user@[192.0.2.1]``) are left to the sender check. With no local domains and no host names
configured there is nothing to protect, and the check says nothing.

Reply: ``550 5.7.1 spoof: <sender> uses our domain <domain> from outside (<ip>, SPF <result>)``
(or ``no SPF pass`` when there is no SPF result for the sender).

Outcome: spoof.local-domain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..address import Mailbox
from ..check import Check, Services
from ..facts import Connection, Facts, Stage
from ..options import NETWORKS, CheckSettings, IPNetwork, option
from ..textutil import printable
from ..verdict import Verdict, reject

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


def our_domain(domain: str, ours: Iterable[str]) -> str:
    """The entry of ``ours`` that ``domain`` is or is a subdomain of, else ""."""
    for name in ours:
        if domain == name or domain.endswith("." + name):
            return name
    return ""


def spf_result(earlier: Iterable[Verdict], domain: str) -> str:
    """The SPF result recorded earlier for a MAIL FROM address in ``domain``, else ""."""
    found = ""
    for verdict in earlier:
        for auth in verdict.auth:
            if auth.method != "spf":
                continue
            for ptype, prop, value in auth.properties:
                if (ptype, prop) == ("smtp", "mailfrom") and _domain_of(value) == domain:
                    found = auth.result  # the latest evaluation wins
    return found


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].rstrip(".").lower()


def _is_forwarder(connection: Connection, settings: SpoofSettings) -> bool:
    ip = connection.client_ip
    return ip is not None and any(ip in network for network in settings.forwarders)


def check_mail(facts: Facts, settings: SpoofSettings, services: Services) -> Verdict | None:
    """Refuse an outside client using our domain in MAIL FROM unless SPF passed for it."""
    connection, envelope = facts.connection, facts.envelope
    if connection.exempt or envelope is None or _is_forwarder(connection, settings):
        return None
    sender = envelope.sender
    if not isinstance(sender, Mailbox) or not sender.domain or sender.literal is not None:
        return None
    site = services.site
    ours = our_domain(sender.domain, (*site.local_domains, *site.hostnames))
    if not ours:
        return None
    result = spf_result(facts.earlier, sender.domain)
    if result == "pass":
        return None
    evidence = f"SPF {result}" if result else "no SPF pass"
    return reject(
        NAME,
        "local-domain",
        f"{printable(sender.address, 100)} uses our domain {ours} "
        f"from outside ({connection.client_text}, {evidence})",
    )


CHECK = Check(
    name=NAME,
    summary="refuse outside clients using our own domains in MAIL FROM without an SPF pass",
    settings=SpoofSettings,
    stages={Stage.MAIL: check_mail},
)
