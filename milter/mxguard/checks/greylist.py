"""greylist - defer the first delivery attempt of an unknown (client network, sender, recipient).

Stage: RCPT (the triplet needs the recipient). Off by default.

The triplet is the client network (IPv4 /24, IPv6 /64, so a sender's pool of neighbouring
addresses counts as one client), the lower-cased envelope sender (``<>`` for the null sender)
and the lower-cased recipient. Its first sight is deferred with
``451 4.7.1 greylist: greylisted, please try again in <delay>``; a retry before ``delay`` has
passed is deferred again (with the time left); a retry between ``delay`` and ``expire`` after
the first sight is accepted, and a triplet not retried within ``expire`` is forgotten (its
next attempt starts again). A successful retry allows the client network with the sender
domain (the part after ``@``; ``<>`` for the null sender) for ``retain``, counted from that
retry: a provider whose servers in that network send for several addresses of the domain is
greylisted once, not once per sender and recipient.

Exempt: trusted and authenticated clients, clients without an IP address, recipients the MTA
refused already, the access list's allow entries (the pipeline skips inbound checks after an
allow), and senders whose SPF ``pass`` (the spf check's verdict for smtp.mailfrom) is for a
domain in ``skip_spf_pass_domains`` or a subdomain of one.

Every decision uses times from the injected clock, stored in the values; the store's own
expiry only bounds how long rows are kept. Store operations are atomic one by one (first sight
is ``put_new``). A failing store never defers mail: the check fails open with a warning.

Outcomes: greylist.deferred.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from dataclasses import dataclass

from mxguard.core.check import Check, Services
from mxguard.core.errors import StoreError
from mxguard.core.facts import Facts, IPAddress, Stage, normalise_ip
from mxguard.core.findings import SpfResults
from mxguard.core.options import BOOL, DOMAINS, DURATION, CheckSettings, option
from mxguard.core.verdict import Replies, Verdict, tempfail
from mxguard.mail.address import Mailbox, NullPath
from mxguard.mail.domains import within

NAME = "greylist"
log = logging.getLogger("mxguard.greylist")

TRIPLET_PREFIX = "greylist:triplet:"
PASS_PREFIX = "greylist:pass:"
NULL_SENDER = "<>"
# Rows are kept this much longer than the decisions need them, so the store's own expiry
# (by its own clock, exclusive at the end) never decides an edge case: the stored times do.
MARGIN = 60.0


@dataclass(frozen=True, slots=True)
class GreylistSettings(CheckSettings):
    """Options of [greylist]."""

    enabled: bool = option("no", "run this check (off by default)", BOOL)
    delay: float = option(
        "5m", "a retry sooner than this after the first attempt is deferred again", DURATION
    )
    expire: float = option(
        "4h", "a triplet not retried within this after its first attempt is forgotten", DURATION
    )
    retain: float = option(
        "35d",
        "after a successful retry, how long the client network and sender domain pass",
        DURATION,
    )
    skip_spf_pass_domains: tuple[str, ...] = option(
        "",
        "sender domains (and their subdomains) not greylisted when SPF passes for MAIL FROM",
        DOMAINS,
    )


def prepare(settings: GreylistSettings) -> GreylistSettings:
    """Warn about settings under which no retry can ever be accepted."""
    if settings.enabled and settings.expire <= settings.delay:
        log.warning(
            "[greylist] expire (%gs) is not longer than delay (%gs): no retry can pass",
            settings.expire,
            settings.delay,
        )
    return settings


def client_network(ip: IPAddress) -> str:
    """The network a client is greylisted as: its IPv4 /24 or IPv6 /64."""
    ip = normalise_ip(ip)
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def sender_identity(facts: Facts) -> tuple[str, str]:
    """(sender, sender domain) for the keys: lower-cased; ``<>`` for the null sender."""
    envelope = facts.envelope
    if envelope is None:
        return NULL_SENDER, NULL_SENDER
    path = envelope.sender
    if isinstance(path, NullPath):
        return NULL_SENDER, NULL_SENDER
    if isinstance(path, Mailbox):
        address = path.address.lower()
        return address, (path.domain or address).lower()
    raw = envelope.raw_sender.strip().strip("<>").lower() or NULL_SENDER
    return raw, raw.rpartition("@")[2] or raw


def recipient_identity(facts: Facts) -> str:
    """The recipient for the triplet, lower-cased."""
    assert facts.recipient is not None
    path = facts.recipient.path
    if isinstance(path, Mailbox):
        return path.address.lower()
    return facts.recipient.raw.strip().strip("<>").lower()


def spf_pass_domain(facts: Facts) -> str | None:
    """The MAIL FROM domain the spf check found ``pass`` for, if it did. SPF that could not be
    told is no pass: the client is greylisted, a 4xx either way."""
    found = facts.findings.known(SpfResults)
    mailfrom = found.mailfrom if found is not None else None
    return mailfrom.domain if mailfrom is not None and mailfrom.result == "pass" else None


def _wait_text(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} second" + ("s" if seconds != 1 else "")
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute" + ("s" if minutes != 1 else "")


def _defer(wait: float) -> Verdict:
    return tempfail(
        NAME, "deferred", f"greylisted, please try again in {_wait_text(wait)}", Replies.TEMPORARY
    )


def _stored_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # not ours: treated as absent and overwritten


def check_rcpt(facts: Facts, settings: GreylistSettings, services: Services) -> Verdict | None:
    """Defer an unknown triplet; accept a retry between ``delay`` and ``expire``."""
    connection, recipient = facts.connection, facts.recipient
    if connection.client_ip is None:
        return None
    if recipient is None or recipient.mta_rejected:
        return None
    if settings.skip_spf_pass_domains:
        domain = spf_pass_domain(facts)
        if domain and within(domain, settings.skip_spf_pass_domains):
            return None
    store = services.store
    if store is None:
        services.notices.warn("store", "greylist: no state store; not greylisting")
        return None
    network = client_network(connection.client_ip)
    sender, sender_domain = sender_identity(facts)
    pass_key = f"{PASS_PREFIX}{network}|{sender_domain}"
    triplet_key = f"{TRIPLET_PREFIX}{network}|{sender}|{recipient_identity(facts)}"
    now = services.clock()
    try:
        passed_at = _stored_time(store.get(pass_key))
        if passed_at is not None and now <= passed_at + settings.retain:
            return None
        if store.put_new(triplet_key, str(now), settings.expire + MARGIN):
            return _defer(settings.delay)
        first = _stored_time(store.get(triplet_key))
        if first is None or now > first + settings.expire:
            # Gone since put_new, unreadable, or older than expire by our clock (the store
            # keeps rows by its own clock): this attempt is a new first sight.
            store.put(triplet_key, str(now), settings.expire + MARGIN)
            return _defer(settings.delay)
        if now < first + settings.delay:
            return _defer(first + settings.delay - now)
        store.put(pass_key, str(now), settings.retain + MARGIN)
    except StoreError as error:
        services.notices.warn("store", "greylist: state store failed, not greylisting: %s", error)
    return None


CHECK = Check(
    name=NAME,
    summary="defer the first attempt of an unknown client network, sender and recipient",
    settings=GreylistSettings,
    stages={Stage.RCPT: check_rcpt},
    prepare=prepare,
    needs=frozenset({SpfResults}),
)
