"""relay - refuse recipients that would route mail off-site or that use a routing trick.

Stage: RCPT. Applies to clients that are neither trusted nor authenticated.

Refused with ``550 5.7.1 relay: ...``: the percent hack, UUCP bang paths, source routes, quoted
local parts that hide ``@``, ``%`` or ``!``, more than one unquoted ``@``, address literals that
are not ours, and domains that are not in ``[milter] local_domains`` or ``hostnames``.
A recipient that cannot be parsed at all gets ``501 5.1.3``.

Outcomes: relay.percent-hack, relay.bang-path, relay.source-route, relay.quoted-route,
relay.multiple-at, relay.foreign-literal, relay.foreign-domain, relay.bad-address.
"""

from __future__ import annotations

from dataclasses import dataclass

from mxguard.core.check import OUR_CLIENTS, Check, Services
from mxguard.core.facts import Facts, Stage
from mxguard.core.options import NETWORKS, CheckSettings, IPNetwork, option
from mxguard.core.verdict import Replies, Verdict, reject
from mxguard.mail.address import NullPath, routing_tricks
from mxguard.mail.address_error import AddressError
from mxguard.mail.textutil import printable

NAME = "relay"

TRICKS = {
    "percent-hack": "percent hack",
    "bang-path": "UUCP bang path",
    "source-route": "source route",
    "quoted-route": "quoted local part hiding a route",
    "multiple-at": "more than one @",
}


@dataclass(frozen=True, slots=True)
class RelaySettings(CheckSettings):
    """Options of [relay]."""

    accept_literals: tuple[IPNetwork, ...] = option(
        "",
        "networks whose address literals (user@[192.0.2.1]) count as ours, besides the address "
        "the client connected to",
        NETWORKS,
    )


def check_rcpt(facts: Facts, settings: RelaySettings, services: Services) -> Verdict | None:
    """Refuse a recipient that an outside client may not use."""
    connection, recipient = facts.connection, facts.recipient
    if recipient is None or recipient.mta_rejected:
        return None
    shown = printable(recipient.raw)
    tricks = routing_tricks(recipient.raw)
    if tricks:
        return reject(NAME, tricks[0], f"{TRICKS.get(tricks[0], tricks[0])} not allowed: {shown}")
    path = recipient.path
    if isinstance(path, AddressError):
        return reject(
            NAME,
            "bad-address",
            f"bad recipient address syntax: {path.reason}",
            Replies.BAD_ADDRESS,
        )
    if isinstance(path, NullPath):
        return reject(NAME, "bad-address", "null recipient", Replies.BAD_ADDRESS)
    if path.literal is not None:
        ours = path.literal == connection.interface_ip or any(
            path.literal in network for network in settings.accept_literals
        )
        if ours:
            return None
        return reject(NAME, "foreign-literal", f"relay access denied: {shown}")
    if not path.domain or not services.site.local_domains:
        return None  # <postmaster>, or no local domains configured (warned at startup)
    if services.site.receives_for(path.domain):
        return None
    return reject(NAME, "foreign-domain", f"relay access denied: {shown}")


CHECK = Check(
    name=NAME,
    summary="refuse off-site recipients and routing tricks from outside clients",
    settings=RelaySettings,
    stages={Stage.RCPT: check_rcpt},
    exempt=OUR_CLIENTS,  # an access-list allow must never open the relay
)
