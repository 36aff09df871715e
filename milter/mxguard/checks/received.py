"""received - refuse mail looping between MTAs, and mail whose Received fields forge our hops.

Stage: end of message. The Received fields are numbered from the top: hop 1 is the newest.

Neither Postfix (3.7) nor Sendmail (8.17) passes the Received field it adds for this
connection to the milter, so every field seen here came with the message, and none is true
merely because it is on top: anyone can write any Received field before sending.

* Loop: more than ``max_hops`` Received fields (0: no limit) is refused for every client,
  trusted, authenticated and access-list-allowed ones included: a loop is a loop.
* Forgery: for clients that are neither trusted nor authenticated (nor allowed by the access
  list), a message is forged when one of its fields claims what only we could have written:

  a. ``by`` one of ``[milter] hostnames`` (case-insensitive, trailing dot ignored);
  b. ``from`` a HELO or reverse DNS name that is one of our host names, one of ``[milter]
     local_domains`` or a subdomain of one, with an address that is not ours (or none);
  c. ``from`` an address in ``[milter] trusted_networks``: a claim that the message passed
     through our own networks;
  d. a date more than ``future_skew`` after our clock, or a field dated more than
     ``backwards_skew`` before the (older) field below it; fields without a date are skipped.

  Rules a-c are not applied to mail that carries a passing DKIM signature of one of our local
  domains: that mail went out from us, and our hops below the outside ones are genuine (our
  user's post to an outside mailing list, coming back to our other subscribers). The dkim
  check must run before this one (it does in the default order).

  A loopback address (127.0.0.0/8, ::1) is never "ours" here, although trusted_networks lists
  it by default: every MTA has one, and "from localhost (localhost [127.0.0.1])" written by a
  sender's own content filter says nothing about our network. So it is no evidence for (c),
  and it does not excuse our name in (b).
* Fields that do not parse are tolerated and counted (finding ``received.unparsed``).
* With ``find_client`` and a trusted client (a front-end MTA of ours relaying to us), the
  fields it and our other relays wrote are evidence: walking down from the top across hops
  from trusted (or loopback) addresses, the first hop from elsewhere is where the message
  entered our network. Its address and HELO name become the findings
  ``received.client-ip`` and ``received.client-helo``. The walk stops without a result at a
  field that does not parse or names no address, since what lies below it cannot be trusted.

Replies: ``554 5.4.6 received: too many hops (<n> > <max_hops>)``;
``550 5.7.1 received: <evidence>`` for a forgery when ``forged = reject``.

Outcomes: received.loop, received.forged, and (no refusal; findings only) received.unparsed,
received.client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from mxguard.core.check import Check, Services
from mxguard.core.facts import Facts, IPAddress, Stage
from mxguard.core.findings import Allowed, CouldNotTell, DkimSignatures, OutsideClient
from mxguard.core.options import (
    BOOL,
    DURATION,
    INT,
    SEVERITY,
    CheckSettings,
    IPNetwork,
    Severity,
    option,
)
from mxguard.core.verdict import Replies, Verdict, by_severity, deferred, passed, reject
from mxguard.mail.domains import within
from mxguard.mail.received import Hop, parse
from mxguard.mail.textutil import printable

NAME = "received"


@dataclass(frozen=True, slots=True)
class ReceivedSettings(CheckSettings):
    """Options of [received]."""

    forged: str = option(
        "reject",
        "a Received field from an outside client that claims our hosts or networks: "
        "reject, tag or off",
        SEVERITY,
    )
    max_hops: int = option(
        "50", "refuse a message with more Received fields than this as a loop (0: no limit)", INT
    )
    find_client: bool = option(
        "no",
        "from a trusted relay, find the first outside hop in the Received fields "
        "(for later checks)",
        BOOL,
    )
    future_skew: float = option(
        "1d", "a Received date further in the future than this is forged", DURATION
    )
    backwards_skew: float = option(
        "1d", "a Received date earlier than the one below it by more than this is forged", DURATION
    )


def _ours(ip: IPAddress | None, networks: Iterable[IPNetwork]) -> bool:
    """True for an address of our networks; loopback is everybody's, so never ours."""
    return ip is not None and not ip.is_loopback and any(ip in net for net in networks)


def first_untrusted_hop(
    hops: Sequence[Hop | None], trusted_networks: Iterable[IPNetwork]
) -> Hop | None:
    """Walking down from the top, the first hop from outside ``trusted_networks`` (loopback
    counts as inside); None when the walk meets a hop without an address first."""
    networks = tuple(trusted_networks)
    for hop in hops:
        if hop is None or hop.from_ip is None:
            return None  # below a hop we cannot read, nothing is evidence any more
        ip = hop.from_ip
        # A loopback hop was written by the trusted host above it, about itself (a content
        # filter handing the message back): the walk goes on.
        if not ip.is_loopback and not any(ip in net for net in networks):
            return hop
    return None


def _name(text: str) -> str:
    return text.strip().rstrip(".").lower()


def _claims_ours(hop: Hop, number: int, site: Any) -> str:
    """The evidence that ``hop`` claims our host, name or network (rules a-c), else ""."""
    hostnames = {_name(name) for name in site.hostnames}
    networks, local_domains = site.trusted_networks, site.local_domains
    by = _name(hop.by)
    if by and by in hostnames:
        return f"hop {number} claims to be received by our host {printable(by, 100)}"
    ip = hop.from_ip
    if _ours(ip, networks):
        return f"hop {number} claims to be from our network ({ip})"
    # Not from our network (or from no address at all), so none of our names may appear.
    for claimed in (hop.from_name, hop.from_rdns):
        name = _name(claimed)
        if name and (name in hostnames or within(name, local_domains)):
            where = f"outside our networks ({ip})" if ip is not None else "without an address"
            return f"hop {number} claims to be from our name {printable(name, 100)} {where}"
    return ""


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}h"


def _bad_dates(hops: Sequence[Hop | None], now: float, settings: ReceivedSettings) -> str:
    """The evidence that the dates are impossible (rule d), else ""."""
    above: tuple[int, float] | None = None  # the nearest dated hop above, and its time
    for number, hop in enumerate(hops, 1):
        if hop is None or hop.date is None:
            continue
        stamp = hop.date.timestamp()
        if stamp - now > settings.future_skew:
            return f"hop {number} is dated {_hours(stamp - now)} in the future ({_when(stamp)})"
        # Fields are prepended, so the one above was written later: it may not be much older.
        if above is not None and stamp - above[1] > settings.backwards_skew:
            return (
                f"hop {above[0]} is dated {_hours(stamp - above[1])} before hop {number} "
                f"below it ({_when(above[1])} < {_when(stamp)})"
            )
        above = (number, stamp)
    return ""


def forgery(
    hops: Sequence[Hop | None],
    services: Services,
    settings: ReceivedSettings,
    signed_by_us: bool = False,
) -> str:
    """The first evidence of forgery in ``hops`` (newest first), or "" when there is none.

    Mail that one of our domains signed (and that still verifies) went out from us: our own
    hops below the outside ones are genuine (a post to a mailing list coming back)."""
    for number, hop in enumerate(hops, 1):
        if hop is not None and not signed_by_us:
            evidence = _claims_ours(hop, number, services.site)
            if evidence:
                return evidence
    return _bad_dates(hops, services.clock(), settings)


def _signed_by_us(facts: Facts, ours: Sequence[str]) -> tuple[bool, str]:
    """Whether a passing signature of one of our domains is on the message, and, when that
    could not be told now (a key lookup failed, or the dkim check did), why."""
    found = facts.findings.get(DkimSignatures)
    if isinstance(found, CouldNotTell):
        return False, found.reason
    if found is None:
        return False, ""
    if any(within(domain, ours) for domain in found.passing()):
        return True, ""
    untold = [domain for domain in found.untold() if within(domain, ours)]
    return False, f"DKIM temperror for {', '.join(untold)}" if untold else ""


def check_eom(facts: Facts, settings: ReceivedSettings, services: Services) -> Verdict | None:
    """Refuse looping and forged messages; report unparsed fields and the outside client."""
    message = facts.message
    if message is None:
        return None
    values = message.values("Received")
    if settings.max_hops and len(values) > settings.max_hops:
        reason = f"too many hops ({len(values)} > {settings.max_hops})"
        return reject(NAME, "loop", reason, Replies.LOOP)
    hops = [parse(value) for value in values]
    unparsed = sum(hop is None for hop in hops)
    notes: list[str] = []
    if unparsed:
        notes.append(f"{unparsed} of {len(hops)} Received fields do not parse")
    connection = facts.connection
    if connection.relay_ip is not None:
        # Behind our front-end relay: the fields down to the client's hop are our relays' own.
        client = first_untrusted_hop(hops, services.site.trusted_networks)
        hops = hops[hops.index(client) + 1 :] if client in hops else []
    allowed = facts.findings.known(Allowed) is not None
    if settings.forged != Severity.OFF and not connection.ours and not allowed:
        signed_by_us, untold = _signed_by_us(facts, services.site.local_domains)
        evidence = forgery(hops, services, settings, signed_by_us)
        if evidence and untold and settings.forged == Severity.REJECT:
            # Our own signature might have vouched for our hops: ask again later.
            return deferred(NAME, "could-not-tell", f"{evidence}; cannot tell now ({untold})")
        if evidence:
            return by_severity(settings.forged, NAME, "forged", evidence)
    if connection.trusted and settings.find_client:
        client = first_untrusted_hop(hops, services.site.trusted_networks)
        if client is not None:
            notes.append(f"the client outside our relays is {client.from_ip}")
    if not notes:
        return None
    return passed(NAME, "unparsed" if unparsed else "client", "; ".join(notes))


def real_client(
    facts: Facts, settings: ReceivedSettings, services: Services
) -> OutsideClient | None:
    """With ``find_client``, the outside client named by our trusted relay's Received chain."""
    connection, message = facts.connection, facts.message
    if not (settings.find_client and connection.trusted) or connection.authenticated:
        return None
    if message is None:
        return None
    hops = [parse(value) for value in message.values("Received")[: settings.max_hops or None]]
    client = first_untrusted_hop(hops, services.site.trusted_networks)
    if client is None or client.from_ip is None:
        return None
    outside = replace(
        connection,
        client_ip=client.from_ip,
        client_name=client.from_rdns or "unknown",
        helo=client.from_name,
        trusted=False,
        relay_ip=connection.client_ip,
    )
    return OutsideClient(outside)


CHECK = Check(
    name=NAME,
    summary="refuse mail loops and Received fields that forge our hosts, networks or time",
    settings=ReceivedSettings,
    stages={Stage.EOM: check_eom},
    # The loop limit holds for every client, even one an access-list entry allowed; the
    # forgery tests skip our own and allowed clients themselves.
    exempt=frozenset(),
    finds_client=real_client,
    needs=frozenset({DkimSignatures, Allowed}),
    provides=frozenset({OutsideClient}),
)
