"""spf - evaluate SPF (RFC 7208) for the MAIL FROM and HELO identities, with pyspf.

Stage: MAIL. Clients in trusted_networks, authenticated clients and the forwarders in
``trusted_forwarders`` are not checked (forwarding breaks SPF).

Both identities are evaluated (RFC 7208 section 2.3): the HELO name, and the MAIL FROM
address; for the null sender ``<>`` the HELO identity is the one that decides. Each result's
action is an option (``continue``, ``tag``, ``reject`` or ``tempfail``):

    pass, neutral, none -> continue    softfail, permerror -> tag
    fail -> reject (550 5.7.1 spf: ..., with the domain's exp= explanation)
    temperror -> tempfail (451 4.4.3; any other result set to tempfail: 451 4.7.1)

Every lookup goes through the project's resolver (cached, bounded); RFC 7208's limits (10
DNS-querying terms, 2 void lookups) are pyspf's, and ``timeout`` bounds the whole check (both
identities; a question already asked when it runs out is waited for, one [dns] timeout at
most), well inside Postfix's milter_command_timeout. Both results go into Authentication-Results
(``spf=... smtp.mailfrom=...`` and ``spf=... smtp.helo=...``); ``received_spf = yes`` also adds
a Received-SPF field.

Outcomes: spf.<result> for the deciding identity (spf.pass, spf.fail, spf.softfail ...).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import spf as pyspf

from mxguard.core.check import Check, DnsView, Result, Services
from mxguard.core.dns import PYSPF, DnsResult, Query, Unknown
from mxguard.core.facts import Connection, Facts, IPAddress, Stage
from mxguard.core.findings import SpfIdentity, SpfResults
from mxguard.core.options import (
    BOOL,
    DURATION,
    NETWORKS,
    WORDS,
    CheckSettings,
    IPNetwork,
    choice,
    option,
)
from mxguard.core.verdict import AuthResult, Replies, by_severity, tempfail
from mxguard.mail.address import Mailbox, NullPath
from mxguard.mail.address_literal import is_ip_address
from mxguard.mail.textutil import printable

NAME = "spf"
log = logging.getLogger("mxguard.spf")

ACTIONS = ("continue", "tag", "reject", "tempfail")
ACTION = choice(*ACTIONS)
RESULTS = ("pass", "neutral", "none", "fail", "softfail", "permerror", "temperror")


class SpfMemo:
    """Recent SPF results by (client address, sender, HELO), for ``MEMO_SECONDS``.

    pyspf parses the records and walks their mechanisms on every evaluation (65 us here even
    with every DNS answer cached). A newsletter or a list sends many messages from one address
    within seconds, so a result is reused briefly: a record change shows after a minute at
    most, well inside the DNS TTLs it came from. A temperror is never kept."""

    def __init__(self, size: int = 10_000) -> None:
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, tuple[str, str]]]
        self._entries = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str], now: float) -> tuple[str, str] | None:
        """The result remembered for ``key``, unless it is older than MEMO_SECONDS."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= now:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[str, str, str], result: tuple[str, str], now: float) -> None:
        """Remember ``result`` (result, explanation) for MEMO_SECONDS from ``now``."""
        if result[0] == "temperror":
            return
        with self._lock:
            self._entries[key] = (now + MEMO_SECONDS, result)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


MEMO_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class SpfSettings(CheckSettings):
    """Options of [spf]."""

    on_pass: str = option("continue", "action for an SPF pass", ACTION)
    on_neutral: str = option("continue", "action for neutral (?all)", ACTION)
    on_none: str = option("continue", "action when the domain publishes no SPF", ACTION)
    on_fail: str = option("reject", "action for fail (-all): 550 5.7.1", ACTION)
    on_softfail: str = option("tag", "action for softfail (~all)", ACTION)
    on_permerror: str = option("tag", "action for a broken SPF record", ACTION)
    # A DNS failure may never become a 5xx: the sender must be able to retry.
    on_temperror: str = option(
        "tempfail", "action for a DNS failure: 451 4.4.3", choice("continue", "tag", "tempfail")
    )
    check_helo: bool = option("yes", "also evaluate the HELO identity", BOOL)
    received_spf: bool = option("no", "add a Received-SPF header field", BOOL)
    trusted_forwarders: tuple[IPNetwork, ...] = option(
        "", "forwarders' IP addresses or networks, not checked (forwarding breaks SPF)", NETWORKS
    )
    trusted_forwarder_names: tuple[str, ...] = option(
        "", "forwarders' verified host names (or .domain suffixes), not checked", WORDS
    )
    timeout: float = option(
        "10s", "bound for the whole SPF check, both identities (plus one [dns] timeout)", DURATION
    )
    # Not an option: the memo of recent results, given to the settings by CHECK.prepare.
    memo: SpfMemo | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SpfResult:
    """One identity's SPF result."""

    identity: str  # "mailfrom" or "helo"
    domain: str
    result: str
    explanation: str = ""


class _Bounded:
    """A DNS view that stops asking once the check's time is up: its questions are then
    answered "could not tell" at once (pyspf's temperror).

    pyspf's own bound (``querytime``) counts only the questions that were answered, and pyspf
    ignores a failed exp= lookup and goes on: without this, a record whose includes each name
    an exp= target that times out holds the connection one DNS timeout per include."""

    def __init__(self, dns: DnsView, deadline: float, monotonic: Callable[[], float]) -> None:
        self._dns = dns
        self.deadline = deadline
        self._monotonic = monotonic

    def lookup(self, name: str, rdtype: str) -> DnsResult:
        """The answer from the wrapped view, or Unknown once the time is up."""
        if self._monotonic() >= self.deadline:
            return Unknown("not asked: SPF time limit reached")
        return self._dns.lookup(name, rdtype)

    def lookup_all(self, queries: Iterable[Query]) -> dict[Query, DnsResult]:
        """Answers for several questions, each as :meth:`lookup` gives it."""
        return {query: self.lookup(query.name, query.rdtype) for query in queries}


def evaluate(
    ip: IPAddress,
    sender: str,
    helo: str,
    dns: DnsView,
    timeout: float,
    deadline: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[str, str]:
    """pyspf's (result, explanation) for MAIL FROM ``sender`` ('' for the HELO identity), with
    every DNS question going to ``dns``; never raises.

    No question is asked after ``timeout`` seconds, or after ``deadline`` (a time.monotonic()
    value) when one is given, so that several evaluations can share one bound."""
    if deadline is None:
        deadline = monotonic() + timeout
    remaining = deadline - monotonic()
    if remaining <= 0:
        return "temperror", "SPF Temporary Error: SPF time limit reached"
    try:
        with PYSPF.using(_Bounded(dns, deadline, monotonic)):
            query = pyspf.query(i=str(ip), s=sender, h=helo, timeout=remaining, querytime=remaining)
            local, _, domain = sender.rpartition("@")
            if "@" in local:
                # A quoted local part ("a@b"@example.org): pyspf splits at the first @ and
                # would judge the domain b"@example.org; the domain follows the last one.
                query.l, query.o, query.d = local, domain, domain
            result, _code, explanation = query.check()
    except Exception:  # pyspf on hostile input: the sender retries, never a 5xx
        log.exception("spf: evaluation failed for ip=%s sender=%s helo=%s", ip, sender, helo)
        return "temperror", "internal error"
    return result, explanation or ""


def _is_forwarder(connection: Connection, settings: SpfSettings) -> bool:
    ip = connection.client_ip
    if ip is not None and any(ip in network for network in settings.trusted_forwarders):
        return True
    name = connection.client_name.lower().rstrip(".")
    # "host.example" is that host; ".example" is any name under example.
    return any(
        name.endswith(entry.lower()) if entry.startswith(".") else name == entry.lower()
        for entry in settings.trusted_forwarder_names
    )


def _helo_domain(helo: str) -> str:
    """The HELO name when it can be an SPF identity (a domain, not an address literal)."""
    name = helo.strip().rstrip(".").lower()
    return "" if not name or name.startswith("[") or is_ip_address(name) else name


def _remembered(
    settings: SpfSettings, now: float, ip: IPAddress, sender: str, helo: str, compute
) -> tuple[str, str]:
    """``compute()``'s (result, explanation), or the memo's when it has a fresh one."""
    memo = settings.memo
    if memo is None:
        return compute()
    key = (str(ip), sender, helo)
    found = memo.get(key, now)
    if found is None:
        found = compute()
        memo.put(key, found, now)
    return found


def identities(
    facts: Facts,
    settings: SpfSettings,
    dns: DnsView,
    now: float = 0.0,
    monotonic: Callable[[], float] = time.monotonic,
) -> list[SpfResult]:
    """The SPF results of this transaction: MAIL FROM (unless null) and HELO."""
    connection, envelope = facts.connection, facts.envelope
    ip, results = connection.client_ip, []
    helo = _helo_domain(connection.helo)
    if ip is None or envelope is None:
        return results
    sender = envelope.sender
    deadline = monotonic() + settings.timeout  # one bound for both identities
    if isinstance(sender, Mailbox) and sender.domain and sender.literal is None:
        address = f"{sender.local_part}@{sender.domain}"
        identity = helo or sender.domain
        result, explanation = _remembered(
            settings,
            now,
            ip,
            address,
            identity,
            lambda: evaluate(ip, address, identity, dns, settings.timeout, deadline, monotonic),
        )
        results.append(SpfResult("mailfrom", address, result, explanation))
    if helo and (settings.check_helo or isinstance(sender, NullPath)):
        result, explanation = _remembered(
            settings,
            now,
            ip,
            "",
            helo,
            lambda: evaluate(ip, "", helo, dns, settings.timeout, deadline, monotonic),
        )
        results.append(SpfResult("helo", helo, result, explanation))
    return results


def auth_result(result: SpfResult) -> AuthResult:
    """The Authentication-Results entry for one identity."""
    return AuthResult("spf", result.result, properties=(("smtp", result.identity, result.domain),))


def _quoted(text: str) -> str:
    return '"' + printable(text, 200).replace('"', "'").replace("\\", "/") + '"'


def received_spf(result: SpfResult, connection: Connection, receiver: str) -> str:
    """A Received-SPF field value (RFC 7208 section 9.1) for the deciding identity."""
    comment = printable(result.explanation, 200).replace("(", "[").replace(")", "]")
    return (
        f"{result.result} ({receiver}: {comment or result.result}) "
        f"client-ip={connection.client_text}; envelope-from={_quoted(result.domain)}; "
        f"helo={_quoted(connection.helo)}; identity={result.identity}; receiver={receiver};"
    )


def finding(results: Iterable[SpfResult]) -> SpfResults:
    """The SpfResults finding: each identity's domain (lower-case) and result."""
    found = {
        r.identity: SpfIdentity(r.domain.rpartition("@")[2].rstrip(".").lower(), r.result)
        for r in results
    }
    return SpfResults(mailfrom=found.get("mailfrom"), helo=found.get("helo"))


def check_mail(facts: Facts, settings: SpfSettings, services: Services) -> Result | None:
    """Evaluate SPF and apply the configured action for the deciding identity's result."""
    connection = facts.connection
    if _is_forwarder(connection, settings):
        return None
    results = identities(facts, settings, services.dns, services.clock(), services.monotonic)
    if not results:
        return None
    deciding = results[0]  # MAIL FROM when there is one, else HELO
    action = getattr(settings, f"on_{deciding.result}", "continue")
    auth = tuple(auth_result(r) for r in results)
    subject = "HELO " + deciding.domain if deciding.identity == "helo" else deciding.domain
    reason = f"{subject}: {deciding.result}"
    if deciding.result == "fail":
        reason = f"{subject} does not designate {connection.client_text} as permitted sender"
        if deciding.explanation:
            reason += f": {printable(deciding.explanation, 200)}"
    elif deciding.result == "temperror":
        reason = f"cannot evaluate SPF of {subject} now ({deciding.explanation})"
    if action == "tempfail":
        # 4.4.3 says "DNS failure"; a policy deferral (on_softfail = tempfail ...) is 4.7.1.
        code = Replies.TEMPORARY_DNS if deciding.result == "temperror" else Replies.TEMPORARY
        verdict = tempfail(NAME, deciding.result, reason, code)
    else:
        severity = {"continue": "off"}.get(action, action)
        verdict = by_severity(severity, NAME, deciding.result, reason)
    headers: tuple[tuple[str, str], ...] = ()
    if settings.received_spf:
        value = received_spf(deciding, connection, services.site.authserv_id)
        headers = (("Received-SPF", value),)
    verdict = dataclasses.replace(verdict, auth=auth, headers=headers)
    return Result(verdict, (finding(results),))


CHECK = Check(
    name=NAME,
    summary="evaluate SPF for MAIL FROM and HELO; act per result",
    settings=SpfSettings,
    stages={Stage.MAIL: check_mail},
    provides=frozenset({SpfResults}),
    prepare=lambda settings: dataclasses.replace(settings, memo=SpfMemo()),
)
