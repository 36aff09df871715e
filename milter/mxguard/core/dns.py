"""The one DNS door of the process: a cached dnspython resolver with typed answers.

Every answer is one of three kinds, and checks branch on them:

* ``Found`` - the name has records of that type;
* ``NotFound`` - it does not (NXDOMAIN, or the name exists without that type);
* ``Unknown`` - we could not tell (timeout, SERVFAIL, REFUSED, no usable server).

Only ``Unknown`` may lead to a 4xx; a check must never turn it into a 5xx. Lookups of one stage
are issued in parallel with :meth:`Resolver.lookup_all`. pyspf and dkimpy are given this resolver
through :func:`spf_lookup_function` and :func:`dkim_txt_function`.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mxguard.core import metrics
from mxguard.core.errors import ConfigError

log = logging.getLogger("mxguard.dns")


@dataclass(frozen=True, slots=True)
class Query:
    """One question: a domain name and a record type such as "A" or "TXT"."""

    name: str
    rdtype: str

    @classmethod
    def ptr(cls, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Query:
        """The PTR question for an IP address (in-addr.arpa or ip6.arpa)."""
        return cls(ip.reverse_pointer + ".", "PTR")


@dataclass(frozen=True, slots=True)
class Found:
    """Records were found.

    ``records`` holds, per type: A/AAAA address strings; PTR/CNAME/NS target names without the
    final dot; MX (preference, exchange) pairs; TXT tuples of byte strings (one per
    character-string); anything else its presentation text.
    """

    records: tuple[Any, ...]
    ttl: int

    def texts(self) -> tuple[str, ...]:
        """TXT records joined and decoded (undecodable bytes replaced)."""
        return tuple(b"".join(parts).decode("utf-8", "replace") for parts in self.records)


@dataclass(frozen=True, slots=True)
class NotFound:
    """The name or the type does not exist."""

    nxdomain: bool


@dataclass(frozen=True, slots=True)
class Unknown:
    """The question could not be answered now; retrying later may help."""

    reason: str


DnsResult = Found | NotFound | Unknown


def _record(rdata: Any) -> Any:
    rdtype = rdata.rdtype
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return rdata.address
    if rdtype in (dns.rdatatype.PTR, dns.rdatatype.CNAME, dns.rdatatype.NS):
        return rdata.target.to_text(omit_final_dot=True)
    if rdtype == dns.rdatatype.MX:
        return (rdata.preference, rdata.exchange.to_text(omit_final_dot=True))
    if rdtype in (dns.rdatatype.TXT, dns.rdatatype.SPF):
        return tuple(rdata.strings)
    return rdata.to_text()


@dataclass(frozen=True, slots=True)
class _Typed:
    """A typed answer with the expiry time of the wire answer it came from (as the dnspython
    cache expects of its values)."""

    result: DnsResult
    expiration: float


@functools.lru_cache(maxsize=4096)
def _question(name: str, rdtype: str) -> tuple[dns.name.Name, dns.rdatatype.RdataType]:
    """dnspython's parsed form of a question; parsing costs more than the cache lookup itself,
    and a busy MX asks about the same names again and again."""
    return dns.name.from_text(name), dns.rdatatype.from_text(rdtype)


def _failure_reason(error: dns.resolver.NoNameservers) -> str:
    """Name what the servers said: SERVFAIL, REFUSED, or that none answered usefully."""
    rcodes = set()
    for attempt in error.kwargs.get("errors", []):
        response = attempt[-1]
        if response is not None:
            rcodes.add(dns.rcode.to_text(response.rcode()).lower())
    return "/".join(sorted(rcodes)) or "no usable nameserver"


class Resolver:
    """A process-wide resolver: configured servers, one timeout, an LRU cache that honours TTLs
    (negative answers included), and a thread pool for parallel lookups."""

    def __init__(
        self,
        nameservers: tuple[tuple[str, int], ...] = (),
        timeout: float = 3.0,
        cache_size: int = 10000,
        workers: int = 32,
        servers: Sequence[dns.nameserver.Nameserver] = (),
        metered: bool = True,
    ) -> None:
        """``servers`` replaces ``nameservers`` with dnspython server objects (the self-test's
        canned answers); ``metered`` = False keeps its lookups out of the metrics."""
        self._metered = metered
        if servers:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = list(servers)
        elif nameservers:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers
            ]
        else:
            try:
                self._resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration as error:
                raise ConfigError(
                    f"[dns] nameservers is empty and the system resolver is unusable: {error}"
                ) from None
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._resolver.cache = dns.resolver.LRUCache(cache_size) if cache_size else None
        self._typed = dns.resolver.LRUCache(cache_size) if cache_size else None
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mxguard-dns")

    def cached(self, name: str, rdtype: str) -> DnsResult | None:
        """The answer from the cache (positive or negative), or None when it is not there.

        dnspython's cache holds the wire answers, keyed by parsed names whose hashing is slow;
        the typed answers are kept beside them, keyed by the question's text, with the same
        expiry time, in a second dnspython LRU cache. On a busy MX most questions end here."""
        if self._typed is None:
            return None
        entry = self._typed.get((name, rdtype))
        if entry is not None:
            return entry.result
        found = self._from_wire_cache(name, rdtype)
        if found is None:
            return None
        self._typed.put((name, rdtype), found)
        return found.result

    def _from_wire_cache(self, name: str, rdtype: str) -> _Typed | None:
        cache = self._resolver.cache
        try:
            qname, qtype = _question(name, rdtype)
        except Exception:
            return None  # a bad name or type: the full path gives the proper answer
        answer = cache.get((qname, qtype, dns.rdataclass.IN))
        if answer is not None:
            if answer.rrset is None:
                return _Typed(NotFound(nxdomain=False), answer.expiration)
            records = tuple(_record(rdata) for rdata in answer)
            return _Typed(Found(records, answer.rrset.ttl), answer.expiration)
        negative = cache.get((qname, dns.rdatatype.ANY, dns.rdataclass.IN))
        if negative is not None and negative.response.rcode() == dns.rcode.NXDOMAIN:
            return _Typed(NotFound(nxdomain=True), negative.expiration)
        return None

    def lookup(self, name: str, rdtype: str) -> DnsResult:
        """Resolve one question; never raises."""
        hit = self.cached(name, rdtype)
        return hit if hit is not None else self._resolve(name, rdtype)

    def _resolve(self, name: str, rdtype: str) -> DnsResult:
        """Ask the servers (dnspython still answers from its cache if an entry appeared)."""
        started = time.perf_counter()
        result = self._ask(name, rdtype)
        if self._metered:
            outcome = type(result).__name__.lower()  # found, notfound, unknown
            metrics.DNS_LOOKUPS.labels(outcome).observe(time.perf_counter() - started)
        return result

    def _ask(self, name: str, rdtype: str) -> DnsResult:
        try:
            answer = self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return NotFound(nxdomain=True)
        except dns.resolver.NoAnswer:
            return NotFound(nxdomain=False)
        except dns.exception.Timeout:
            return Unknown("timeout")
        except dns.resolver.NoNameservers as error:
            return Unknown(_failure_reason(error))
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel):
            return NotFound(nxdomain=True)  # no such name can exist in the DNS
        except Exception as error:  # an unexpected resolver failure must not become a 5xx
            log.warning("dns: lookup %s/%s failed: %r", name, rdtype, error)
            return Unknown(type(error).__name__)
        return Found(tuple(_record(rdata) for rdata in answer), answer.rrset.ttl)

    def lookup_all(self, queries: Iterable[Query]) -> dict[Query, DnsResult]:
        """Resolve several questions in parallel and wait for all of them."""
        results: dict[Query, DnsResult] = {}
        unique = []
        for query in dict.fromkeys(queries):
            hit = self.cached(query.name, query.rdtype)
            if hit is None:
                unique.append(query)
            else:
                results[query] = hit
        if len(unique) <= 1:
            results.update((q, self._resolve(q.name, q.rdtype)) for q in unique)
            return results
        # The calling thread answers the first question itself, so a busy pool never stalls it.
        futures = {q: self._pool.submit(self._resolve, q.name, q.rdtype) for q in unique[1:]}
        results[unique[0]] = self._resolve(unique[0].name, unique[0].rdtype)
        for query, future in futures.items():
            results[query] = future.result()
        return results

    def close(self, wait: bool = False) -> None:
        """Stop the worker threads (``wait``: until they have ended)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


class ConnectionLookups:
    """The DNS view of one connection: answers already asked for first, then the resolver.

    Checks call :meth:`lookup`; the pipeline calls :meth:`prefetch` with every question of a
    stage at once. Answers live as long as the SMTP session, so a question asked at connect is
    answered from here at RCPT, and a timeout is waited for once, not at every stage."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._answers: dict[Query, DnsResult] = {}

    def prefetch(self, queries: Iterable[Query]) -> None:
        """Issue all ``queries`` in parallel and keep the answers for this connection."""
        missing = [q for q in queries if q not in self._answers]
        if missing:
            self._answers.update(self._resolver.lookup_all(missing))

    def lookup(self, name: str, rdtype: str) -> DnsResult:
        """The answer for one question, from this connection's answers or the resolver."""
        query = Query(name, rdtype)
        result = self._answers.get(query)
        if result is None:
            result = self._answers[query] = self._resolver.lookup(name, rdtype)
        return result

    def lookup_all(self, queries: Iterable[Query]) -> dict[Query, DnsResult]:
        """Answers for several questions, resolving the missing ones in parallel."""
        queries = list(queries)
        self.prefetch(queries)
        return {q: self._answers[q] for q in queries}


def spf_lookup_function(view: Callable[[], Any]) -> Callable[..., list]:
    """A replacement for ``spf.DNSLookup`` that asks ``view()`` (a Resolver or a per-connection
    DNS view), in pyspf's result form."""
    import spf

    def lookup(name: str, qtype: str, strict: bool = True, timeout: float | None = None) -> list:
        result = view().lookup(name, qtype)
        if isinstance(result, Unknown):
            raise spf.TempError(f"DNS {result.reason} for {name}/{qtype}")
        if isinstance(result, NotFound):
            return []
        return [((name, qtype), record) for record in result.records]

    return lookup


class PyspfBridge:
    """Route pyspf's DNS questions to the DNS view of the connection being checked.

    pyspf offers only a module-level hook (``spf.DNSLookup``); libmilter runs each connection
    in its own thread, so the view is kept per thread while an SPF evaluation runs. Outside
    one, a pyspf question is a temporary error: nothing may bypass the project's resolver."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lookup = spf_lookup_function(self._current)

    def _current(self) -> Any:
        view = getattr(self._local, "view", None)
        if view is None:
            import spf

            raise spf.TempError("DNS asked outside mxguard's SPF evaluation")
        return view

    @contextlib.contextmanager
    def using(self, view: Any) -> Iterator[None]:
        """Within the block, pyspf's questions on this thread go to ``view``."""
        import spf

        spf.DNSLookup = self._lookup  # the same function every time: installing is idempotent
        self._local.view = view
        try:
            yield
        finally:
            self._local.view = None


PYSPF = PyspfBridge()


def dkim_txt_function(resolver: Any) -> Callable[..., bytes | None]:
    """A ``dnsfunc`` for dkimpy: the first TXT record of a name, through ``resolver`` (a
    Resolver, or any DNS view with the same ``lookup``)."""
    import dkim

    def get_txt(name: bytes | str, timeout: float = 5) -> bytes | None:
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        # dkimpy asks for absolute names ("...example.org."); the cache knows them without the dot.
        result = resolver.lookup(name.rstrip("."), "TXT")
        if isinstance(result, Unknown):
            raise dkim.DnsTimeoutError(f"DNS {result.reason} for {name}")
        if isinstance(result, NotFound) or not result.records:
            return None
        return b"".join(result.records[0])

    return get_txt
