"""harvest - lock out clients that try many unknown recipients (directory harvesting).

Stage: RCPT, for clients that are neither trusted nor authenticated.

Counting (an observer, so it sees recipients another check refused): a recipient is unknown
when, at this RCPT, a check refused it with ``550 5.1.1`` (the recipients check), or the MTA
itself refused it (``{rcpt_mailer}`` = error, e.g. Postfix's local_recipient_maps). Each one
adds to a counter per client network - the IPv4 address, or the IPv6 /64 - in the state store,
which lives ``window`` from its first count. When it reaches ``max_unknown`` the network is
locked out for ``lockout``, and one warning is logged (``client=<net> unknown=<n>
locked_out=<duration>``, logger mxguard.harvest), once even with several threads or MX hosts.
A 5.1.1 held back by monitor mode is not counted: the client was not told, and the verdict of
an earlier recipient of the transaction stays in the facts and could not be told apart.

Deciding: while the network is locked out, every RCPT - whether the mailbox exists or not -
gets the same ``450 4.7.1 harvest: <net>: too many unknown recipients, try again later``. It
is a REJECT action, so the stage stops there and no later check can answer 550 5.1.1 for an
unknown one. (A recipient the MTA itself refused gets the MTA's reply, which mxguard cannot
change.) The lock-out is in the store, so it outlives the connection and, with Redis, is shared
by every MX host.

A failing store never refuses mail: the check passes and warns (at most once a minute).

A network found not locked out is not asked about again for ``CLEAR_SECONDS`` (1 s): a store
read per RCPT was the largest cost of this check on a busy MX, and for SQLite the most
expensive kind (the interpreter lock is given up during the query and waited for after it).
A lock-out this process sets is seen at once; one set by another MX host, within a second.

Outcomes: harvest.locked-out.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import threading
from dataclasses import dataclass, field

from mxguard.core.check import Check, Services
from mxguard.core.errors import StoreError
from mxguard.core.facts import Facts, Stage, normalise_ip
from mxguard.core.findings import UnknownRecipient
from mxguard.core.options import DURATION, INT, CheckSettings, option
from mxguard.core.verdict import Replies, Verdict, reject

NAME = "harvest"
CLEAR_SECONDS = 1.0
COUNT_PREFIX = "harvest:count:"
LOCK_PREFIX = "harvest:lock:"

log = logging.getLogger("mxguard.harvest")


class RecentlyClear:
    """Client networks found not locked out, and when that stops being news."""

    def __init__(self, size: int = 10_000) -> None:
        self._until: dict[str, float] = {}
        self._size = size
        self._lock = threading.Lock()

    def __contains__(self, item: tuple[str, float]) -> bool:
        network, now = item
        return self._until.get(network, 0.0) > now

    def add(self, network: str, now: float) -> None:
        """Remember that ``network`` was not locked out at ``now``."""
        with self._lock:
            if len(self._until) >= self._size:
                self._until.clear()  # cheaper than an LRU, and at worst a second of reads
            self._until[network] = now + CLEAR_SECONDS

    def forget(self, network: str) -> None:
        """The network was just locked out: ask the store again."""
        with self._lock:
            self._until.pop(network, None)


@dataclass(frozen=True, slots=True)
class HarvestSettings(CheckSettings):
    """Options of [harvest]."""

    max_unknown: int = option(
        "10",
        "unknown recipients from one client network (IPv4 address or IPv6 /64) within window "
        "that lock it out; 0 never locks out",
        INT,
    )
    window: float = option("10m", "how long unknown recipients are counted", DURATION)
    lockout: float = option(
        "1h", "how long a locked-out network gets 450 4.7.1 for every recipient", DURATION
    )
    # Not an option: given by CHECK.prepare.
    clear: RecentlyClear | None = field(default=None, compare=False, repr=False)


def client_network(facts: Facts) -> str | None:
    """The network a client is counted by: its IPv4 address or IPv6 /64; None when unknown."""
    ip = facts.connection.client_ip
    if ip is None:
        return None
    ip = normalise_ip(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _applies(facts: Facts, services: Services) -> str | None:
    """The client network when the check applies to this RCPT (and there is a store), else None."""
    if facts.recipient is None or services.store is None:
        return None
    return client_network(facts)


def _store_failed(services: Services, error: StoreError) -> None:
    services.notices.warn("store", "harvest: state store failed, not counting: %s", error)


def check_rcpt(facts: Facts, settings: HarvestSettings, services: Services) -> Verdict | None:
    """Refuse every recipient, known or not, while the client network is locked out."""
    network = _applies(facts, services)
    if network is None or facts.recipient.mta_rejected:  # type: ignore[union-attr]
        return None
    now, clear = services.clock(), settings.clear
    if clear is not None and (network, now) in clear:
        return None
    try:
        locked = services.store.get(LOCK_PREFIX + network)
    except StoreError as error:
        _store_failed(services, error)
        return None
    if locked is None:
        if clear is not None:
            clear.add(network, now)
        return None
    return reject(
        NAME,
        "locked-out",
        f"{network}: too many unknown recipients, try again later",
        Replies.LOCKED_OUT,
    )


def _unknown(facts: Facts) -> bool:
    """True when this recipient was refused as unknown, by a check or by the MTA."""
    if facts.recipient is not None and facts.recipient.mta_rejected:
        return True
    # A refused recipient's findings are not kept for later RCPTs: this one is its own.
    return facts.findings.known(UnknownRecipient) is not None


def count(facts: Facts, settings: HarvestSettings, services: Services) -> None:
    """Observer: count an unknown recipient; lock the network out when there are too many."""
    network = _applies(facts, services)
    if network is None or settings.max_unknown == 0 or not _unknown(facts):
        return
    try:
        unknown = services.store.incr(COUNT_PREFIX + network, settings.window)
        if unknown < settings.max_unknown:
            return
        locked_now = services.store.put_new(LOCK_PREFIX + network, str(unknown), settings.lockout)
        if settings.clear is not None:
            settings.clear.forget(network)  # after the lock is stored, so no reader misses it
        if locked_now:
            log.warning(
                "client=%s unknown=%d locked_out=%s",
                network,
                unknown,
                DURATION.format(settings.lockout),
            )
    except StoreError as error:
        _store_failed(services, error)


CHECK = Check(
    name=NAME,
    summary="lock out client networks that try many unknown recipients",
    settings=HarvestSettings,
    stages={Stage.RCPT: check_rcpt},
    observers={Stage.RCPT: count},  # observers see every finding of the stage
    prepare=lambda settings: dataclasses.replace(settings, clear=RecentlyClear()),
)
