"""rdns - reverse DNS of the client confirmed forward (FCrDNS), and names of consumer lines.

Stages: the PTR question is asked as soon as the connection opens (in the same parallel batch as
the DNSBL zones); the A (IPv4 client) or AAAA (IPv6 client) questions for its names at HELO, so
both overlap the SMTP dialogue. The decision is given at MAIL, where SMTP AUTH is known, from
the answers the connection already holds. Applies to port-25 clients that are neither trusted
nor authenticated; on the submission listener the check does nothing.

Every decision records ``iprev`` in Authentication-Results with ``policy.iprev=<client ip>``
(RFC 8601 section 2.7.3): ``pass`` (a PTR name resolves back to the client), ``fail`` (PTR names
exist, none resolves back), ``permerror`` (no PTR published), ``temperror`` (the PTR lookup
failed, or no name confirmed while some forward lookup failed). At most 10 PTR names are
examined.

Options:

* ``require_ptr`` = off | tag | reject (default tag): no PTR, or no confirmed name. Rejected
  with ``550 5.7.1 rdns: <ip> has no reverse DNS`` or ``... <ip>'s reverse DNS name <name> does
  not resolve back to it``. A DNS failure is tagged, and answered ``451 4.4.3`` only with reject.
* ``dynamic_ip`` = off | tag | reject (default tag): the confirmed name looks like a consumer line:
  it embeds the client's whole address, or matches a pattern of ``data/dynamic-patterns.txt``
  (whose header documents the format) or of ``patterns_file``. Rejected with ``550 5.7.1`` and a
  pointer to the provider's authenticated submission service on port 587.
* ``patterns_file``: an admin's extra patterns, loaded besides the shipped ones.

Outcomes: rdns.pass, rdns.no-ptr, rdns.unconfirmed, rdns.dns-error, rdns.dynamic.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mxguard.core.check import Check, DnsView, Services
from mxguard.core.dns import DnsResult, Found, NotFound, Query, Unknown
from mxguard.core.facts import Connection, Facts, IPAddress, Stage
from mxguard.core.options import PATH, SEVERITY, CheckSettings, option
from mxguard.core.verdict import AuthResult, Replies, Verdict, by_severity, passed, tempfail
from mxguard.mail.consumer_names import Patterns, consumer_evidence, parse_patterns
from mxguard.mail.textutil import printable

NAME = "rdns"
SHIPPED_PATTERNS = "dynamic-patterns.txt"
# RFC 7208 section 4.6.4 stops SPF's ptr mechanism at 10 names for the same reason: whoever runs
# the reverse zone chooses how many PTR records there are, and each costs us a forward lookup.
# Real mail servers publish one.
MAX_PTR_NAMES = 10

log = logging.getLogger("mxguard.rdns")

MODES = SEVERITY


@dataclass(frozen=True, slots=True)
class RdnsSettings(CheckSettings):
    """Options of [rdns]."""

    require_ptr: str = option(
        "tag",
        "act on a client without a reverse DNS name, or with none that resolves back to its "
        "address; a DNS failure tempfails only with reject",
        MODES,
    )
    dynamic_ip: str = option(
        "tag",
        "act on a client whose confirmed name looks like a consumer line (port 25, not "
        "authenticated); reject points the sender to port 587",
        MODES,
    )
    patterns_file: str = option(
        "",
        "an absolute path to a file of extra consumer-line patterns in the format of the shipped "
        "dynamic-patterns.txt, loaded besides it; empty: none",
        PATH,
    )


# -- patterns --------------------------------------------------------------------------------
# Reading the files is I/O, so it is done here; their format and the matching of names are in
# mail.consumer_names, which stays pure like the rest of mail/.


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the stage functions receive: the settings and the compiled patterns."""

    settings: RdnsSettings
    patterns: Patterns


@functools.cache
def shipped_patterns() -> tuple[str, str] | None:
    """(where, text) of the shipped patterns, read once: a reload runs after the privilege
    drop, when the milter user may not be able to read the installation (see preload)."""
    resource = resources.files("mxguard") / "data" / SHIPPED_PATTERNS
    try:
        return str(resource), resource.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        log.warning("rdns: cannot read the shipped patterns %s: %s", resource, error)
        return None


def _read_admin(path: str) -> tuple[str, str] | None:
    try:
        return path, Path(path).read_text(encoding="utf-8")
    except OSError as error:
        log.warning("rdns: patterns_file %s: cannot read it (%s); ignored", path, error.strerror)
    except UnicodeDecodeError:
        log.warning("rdns: patterns_file %s: not UTF-8 text; ignored", path)
    return None


def prepare(settings: RdnsSettings) -> Prepared:
    """Load the shipped patterns and the admin's; report bad lines and unreadable files."""
    sources = [shipped_patterns()]
    if settings.patterns_file:
        sources.append(_read_admin(settings.patterns_file))
    patterns = Patterns()
    for source in sources:
        if source is None:
            continue
        loaded, problems = parse_patterns(source[1], source[0])
        for problem in problems:
            log.warning("rdns: %s", problem)
        patterns = patterns + loaded
    return Prepared(settings, patterns)


# -- the lookup ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReverseDns:
    """The FCrDNS result for one address: the iprev result and the names behind it."""

    result: str  # pass, fail, permerror or temperror (RFC 8601 section 2.7.3)
    names: tuple[str, ...] = ()  # the PTR names examined
    confirmed: tuple[str, ...] = ()  # those that resolve back to the address
    error: str = ""  # what failed, for temperror


def ptr_names(answer: DnsResult) -> tuple[str, ...]:
    """The distinct PTR names of an answer (lower case), at most MAX_PTR_NAMES of them."""
    if not isinstance(answer, Found):
        return ()
    names = (str(record).lower().rstrip(".") for record in answer.records)
    return tuple(dict.fromkeys(name for name in names if name))[:MAX_PTR_NAMES]


def forward_queries(ip: IPAddress, names: tuple[str, ...]) -> list[Query]:
    """The A (IPv4) or AAAA (IPv6) questions that confirm ``names``."""
    rdtype = "A" if ip.version == 4 else "AAAA"
    return [Query(name, rdtype) for name in names]


def resolves_to(answer: DnsResult, ip: IPAddress) -> bool:
    """True when a forward answer holds the client's address."""
    if not isinstance(answer, Found):
        return False
    for record in answer.records:
        try:
            if ipaddress.ip_address(record) == ip:
                return True
        except ValueError:
            continue
    return False


def evaluate(ip: IPAddress, dns: DnsView) -> ReverseDns:
    """Look up the PTR names of ``ip`` and confirm them forward (answers memoised per
    connection, so after the prefetches this asks nothing)."""
    query = Query.ptr(ip)
    answer = dns.lookup(query.name, query.rdtype)
    if isinstance(answer, Unknown):
        return ReverseDns("temperror", error=f"PTR lookup: {answer.reason}")
    names = ptr_names(answer)
    if isinstance(answer, NotFound) or not names:
        return ReverseDns("permerror")
    answers = dns.lookup_all(forward_queries(ip, names))
    confirmed = tuple(q.name for q, a in answers.items() if resolves_to(a, ip))
    if confirmed:
        return ReverseDns("pass", names, confirmed)
    # A name whose lookup failed might have confirmed: only a 4xx may follow, never a 5xx.
    failed = [f"{q.name}: {a.reason}" for q, a in answers.items() if isinstance(a, Unknown)]
    if failed:
        return ReverseDns("temperror", names, error="forward lookup " + ", ".join(failed))
    return ReverseDns("fail", names)


def iprev(ip: IPAddress, result: str) -> AuthResult:
    """The Authentication-Results entry for the client."""
    return AuthResult("iprev", result, properties=(("policy", "iprev", str(ip)),))


# -- the stages ------------------------------------------------------------------------------


def applies(connection: Connection) -> bool:
    """True for a port-25 client with an IP address that is neither trusted nor authenticated."""
    return connection.client_ip is not None and not connection.submission


def ask_ptr(facts: Facts, prepared: Prepared, services: Services) -> list[Query]:
    """At CONNECT: the PTR question, asked with the other checks' questions."""
    ip = facts.connection.client_ip
    if ip is None or not applies(facts.connection):
        return []
    return [Query.ptr(ip)]


def ask_forward(facts: Facts, prepared: Prepared, services: Services) -> list[Query]:
    """At HELO: the forward questions for the PTR names the CONNECT answer holds."""
    ip = facts.connection.client_ip
    if ip is None or not applies(facts.connection):
        return []
    query = Query.ptr(ip)
    return forward_queries(ip, ptr_names(services.dns.lookup(query.name, query.rdtype)))


def _per_mode(mode: str, outcome: str, reason: str, auth: AuthResult) -> Verdict:
    """A verdict for ``off``, ``tag`` or ``reject``, carrying the iprev result."""
    return by_severity(mode, NAME, outcome, reason, (auth,))


def _dns_error(ip: IPAddress, rdns: ReverseDns, mode: str, auth: AuthResult) -> Verdict:
    reason = f"{ip}'s reverse DNS cannot be checked now ({rdns.error})"
    if mode != "reject":
        return _per_mode(mode, "dns-error", reason, auth)
    verdict = tempfail(NAME, "dns-error", printable(reason), Replies.TEMPORARY_DNS)
    return dataclasses.replace(verdict, auth=(auth,))


def _consumer_line(ip: IPAddress, name: str, evidence: str, mode: str, auth: AuthResult) -> Verdict:
    shown = f"{ip} ({printable(name, 120)}) looks like a consumer connection"
    verdict = _per_mode(mode, "dynamic", f"{shown} ({evidence})", auth)
    if verdict.text:
        # The sender's fix, not our evidence: a consumer machine should never speak to an MX.
        text = (
            f"{NAME}: {shown}; send mail through your provider's authenticated submission "
            "service (port 587)"
        )
        verdict = dataclasses.replace(verdict, text=text)
    return verdict


def decide(facts: Facts, prepared: Prepared, services: Services) -> Verdict | None:
    """At MAIL: record iprev, and act on a missing, unconfirmed or consumer-line name."""
    connection = facts.connection
    ip = connection.client_ip
    if ip is None or not applies(connection):
        return None
    settings = prepared.settings
    rdns = evaluate(ip, services.dns)
    auth = iprev(ip, rdns.result)
    if rdns.result == "temperror":
        return _dns_error(ip, rdns, settings.require_ptr, auth)
    if rdns.result == "permerror":
        return _per_mode(settings.require_ptr, "no-ptr", f"{ip} has no reverse DNS", auth)
    if rdns.result == "fail":
        name = printable(rdns.names[0], 120)
        reason = f"{ip}'s reverse DNS name {name} does not resolve back to it"
        return _per_mode(settings.require_ptr, "unconfirmed", reason, auth)
    name = rdns.confirmed[0]
    if settings.dynamic_ip != "off":
        judged = [(n, consumer_evidence(n, ip, prepared.patterns)) for n in rdns.confirmed]
        # Among several confirmed names, one that does not look like a consumer line clears the
        # client: a false positive costs more than a missed consumer line.
        ordinary = [n for n, evidence in judged if not evidence]
        if not ordinary:
            return _consumer_line(ip, *judged[0], settings.dynamic_ip, auth)
        name = ordinary[0]
    return passed(NAME, "pass", f"{ip} is {printable(name, 120)}", (auth,))


CHECK = Check(
    name=NAME,
    summary="check the client's reverse DNS forward-confirmed (iprev) and spot consumer lines",
    settings=RdnsSettings,
    stages={Stage.MAIL: decide},
    prefetch={Stage.CONNECT: ask_ptr, Stage.HELO: ask_forward},
    prepare=prepare,
)
