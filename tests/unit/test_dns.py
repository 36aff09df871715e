"""The DNS layer against a real DNS server on loopback: typed answers, caching, parallelism,
and the pyspf / dkimpy hooks."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator

import dkim
import pytest
import spf

from mxguard.core.dns import (
    PYSPF,
    ConnectionLookups,
    Found,
    NotFound,
    Query,
    Resolver,
    Unknown,
    dkim_txt_function,
    spf_lookup_function,
)
from tests.support.dnsserver import TestDnsServer

ZONE = """
$ORIGIN example.test.
$TTL 300
@          IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@          IN MX  10 mx
@          IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
mx         IN A   192.0.2.25
mx         IN AAAA 2001:db8::25
alias      IN CNAME mx
long       IN TXT "part one " "part two"
short-ttl 1 IN A  192.0.2.99
sel._domainkey IN TXT "v=DKIM1; k=rsa; p=MIGfMA0"
25.2.0.192.in-addr.arpa. IN PTR mx.example.test.
"""


@pytest.fixture(scope="module")
def server() -> Iterator[TestDnsServer]:
    with TestDnsServer(ZONE) as dns:
        yield dns


@pytest.fixture
def resolver(server: TestDnsServer) -> Iterator[Resolver]:
    server.reset_queries()
    resolver = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=1.0, cache_size=100)
    yield resolver
    resolver.close()


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        pytest.param("mx.example.test", "A", Found(("192.0.2.25",), 300), id="a"),
        pytest.param("mx.example.test", "AAAA", Found(("2001:db8::25",), 300), id="aaaa"),
        pytest.param("example.test", "MX", Found(((10, "mx.example.test"),), 300), id="mx"),
        pytest.param("alias.example.test", "A", Found(("192.0.2.25",), 300), id="cname"),
        pytest.param("25.2.0.192.in-addr.arpa", "PTR", Found(("mx.example.test",), 300), id="ptr"),
        pytest.param("nothing.example.test", "A", NotFound(nxdomain=True), id="nxdomain"),
        pytest.param("mx.example.test", "TXT", NotFound(nxdomain=False), id="nodata"),
        pytest.param("x.servfail.test", "A", Unknown("servfail"), id="servfail"),
        pytest.param("x.refused.test", "A", Unknown("refused"), id="refused"),
        pytest.param("a" * 64 + ".example.test", "A", NotFound(nxdomain=True), id="bad-name"),
    ],
)
def test_answers_are_typed(resolver: Resolver, name: str, rdtype: str, expected: object) -> None:
    assert resolver.lookup(name, rdtype) == expected


def test_timeout_is_could_not_tell(server: TestDnsServer) -> None:
    fast = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=0.3)
    started = time.monotonic()
    assert fast.lookup("x.timeout.test", "A") == Unknown("timeout")
    assert time.monotonic() - started < 1.5
    fast.close()


def test_nobody_listening_is_could_not_tell() -> None:
    closed = Resolver(nameservers=(("127.0.0.1", 9),), timeout=0.3)
    assert isinstance(closed.lookup("example.test", "A"), Unknown)
    closed.close()


def test_txt_records_keep_their_strings(resolver: Resolver) -> None:
    found = resolver.lookup("long.example.test", "TXT")
    assert isinstance(found, Found)
    assert found.records == ((b"part one ", b"part two"),)
    assert found.texts() == ("part one part two",)


def test_positive_and_negative_answers_are_cached(
    resolver: Resolver, server: TestDnsServer
) -> None:
    for _ in range(3):
        resolver.lookup("mx.example.test", "A")
        resolver.lookup("nothing.example.test", "A")
        resolver.lookup("mx.example.test", "TXT")
    assert server.count("mx.example.test", "A") == 1
    assert server.count("nothing.example.test", "A") == 1
    assert server.count("mx.example.test", "TXT") == 1


def test_cache_honours_ttl(resolver: Resolver, server: TestDnsServer) -> None:
    resolver.lookup("short-ttl.example.test", "A")
    resolver.lookup("short-ttl.example.test", "A")
    assert server.count("short-ttl.example.test", "A") == 1
    time.sleep(1.1)
    resolver.lookup("short-ttl.example.test", "A")
    assert server.count("short-ttl.example.test", "A") == 2


def test_cache_is_lru_bounded(server: TestDnsServer) -> None:
    small = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=1.0, cache_size=2)
    server.reset_queries()
    for name in ("mx", "alias", "long", "mx"):
        small.lookup(f"{name}.example.test", "A")
    assert server.count("mx.example.test", "A") == 2  # evicted by the two between
    small.close()


def test_failures_are_not_cached(resolver: Resolver, server: TestDnsServer) -> None:
    resolver.lookup("x.servfail.test", "A")
    resolver.lookup("x.servfail.test", "A")
    assert server.count("x.servfail.test", "A") == 2


def test_lookups_of_a_stage_run_in_parallel(server: TestDnsServer) -> None:
    server.tcp_hold = 0.0
    resolver = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=0.5, cache_size=0)
    queries = [Query(f"q{i}.timeout.test", "A") for i in range(6)]
    started = time.monotonic()
    results = resolver.lookup_all(queries)
    elapsed = time.monotonic() - started
    assert all(isinstance(r, Unknown) for r in results.values())
    assert elapsed < 1.5, f"six 0.5 s timeouts took {elapsed:.2f} s: not parallel"
    resolver.close()


def test_stage_lookups_reuse_prefetched_answers(resolver: Resolver, server: TestDnsServer) -> None:
    uncached = Resolver(nameservers=(("127.0.0.1", server.port),), timeout=1.0, cache_size=0)
    stage = ConnectionLookups(uncached)
    stage.prefetch([Query("mx.example.test", "A"), Query("example.test", "MX")])
    assert stage.lookup("mx.example.test", "A") == Found(("192.0.2.25",), 300)
    assert stage.lookup_all([Query("example.test", "MX")])[Query("example.test", "MX")]
    assert server.count("mx.example.test", "A") == 1
    assert server.count("example.test", "MX") == 1
    uncached.close()


def test_ptr_query_for_ipv4_and_ipv6() -> None:
    assert Query.ptr(ipaddress.ip_address("192.0.2.25")) == Query("25.2.0.192.in-addr.arpa.", "PTR")
    v6 = Query.ptr(ipaddress.ip_address("2001:db8::1"))
    assert v6.name.endswith(".8.b.d.0.1.0.0.2.ip6.arpa.") and v6.name.count(".") == 34


def test_spf_hook_passes_pyspf_through_our_resolver(resolver: Resolver) -> None:
    lookup = spf_lookup_function(lambda: resolver)
    assert lookup("example.test", "TXT") == [
        (("example.test", "TXT"), (b"v=spf1 ip4:192.0.2.0/24 -all",))
    ]
    assert lookup("nothing.example.test", "A") == []
    with pytest.raises(spf.TempError):
        lookup("x.servfail.test", "TXT")


def test_pyspf_evaluates_through_the_hook(resolver: Resolver, monkeypatch) -> None:
    monkeypatch.setattr(spf, "DNSLookup", spf.DNSLookup)  # restored after the test
    with PYSPF.using(ConnectionLookups(resolver)):
        result, _explanation = spf.check2(i="192.0.2.7", s="a@example.test", h="mx.example.test")
        assert result == "pass"
        result, _explanation = spf.check2(i="198.51.100.7", s="a@example.test", h="mx.example.test")
        assert result == "fail"
    # Outside an evaluation pyspf gets no DNS at all: a temporary error, never a bypass.
    assert spf.check2(i="192.0.2.7", s="a@example.test", h="mx.example.test")[0] == "temperror"


def test_dkim_hook_returns_txt_or_none(resolver: Resolver) -> None:
    get_txt = dkim_txt_function(resolver)
    assert get_txt(b"sel._domainkey.example.test.") == b"v=DKIM1; k=rsa; p=MIGfMA0"
    assert get_txt("missing._domainkey.example.test") is None
    with pytest.raises(dkim.DnsTimeoutError):
        get_txt("x.servfail.test")


def test_resolver_is_safe_across_threads(resolver: Resolver) -> None:
    results: list[object] = []

    def worker() -> None:
        for _ in range(50):
            results.append(resolver.lookup("mx.example.test", "A"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 400 and all(r == Found(("192.0.2.25",), 300) for r in results)
