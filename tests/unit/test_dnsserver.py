"""The test DNS server itself, queried with dnspython over UDP and TCP."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.dnsserver import Query, TestDnsServer

ZONE = """
$ORIGIN example.test.
$TTL 300
@          IN SOA   ns hostmaster 1 3600 600 86400 60
@          IN MX    10 mx
mx     120 IN A     192.0.2.25
mx         IN AAAA  2001:db8::25
www        IN CNAME mx
loop1      IN CNAME loop2
loop2      IN CNAME loop1
dangling   IN CNAME gone.example.test.
a.b.deep   IN TXT   "hello"
*.wild     IN A     192.0.2.99
"""


@pytest.fixture(scope="module")
def server() -> Iterator[TestDnsServer]:
    """One server for the module; tests reset its query log themselves."""
    with TestDnsServer(ZONE) as dns_server:
        yield dns_server


def ask(
    server: TestDnsServer, name: str, rdtype: str, tcp: bool = False, timeout: float = 2.0
) -> dns.message.Message:
    """Send one query to the server and return the response."""
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=timeout)
    return dns.query.udp(query, "127.0.0.1", port=server.port, timeout=timeout)


def answers(response: dns.message.Message) -> list[tuple[str, str, int, str]]:
    """Return the answer section as (name, type, ttl, rdata) tuples."""
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rdata.to_text())
        for rrset in response.answer
        for rdata in rrset
    ]


def test_binds_udp_and_tcp_on_one_loopback_port(server: TestDnsServer) -> None:
    """The address is 127.0.0.1:PORT and both transports answer there."""
    assert server.address == f"127.0.0.1:{server.port}"
    for tcp in (False, True):
        response = ask(server, "mx.example.test", "A", tcp=tcp)
        assert answers(response) == [("mx.example.test.", "A", 120, "192.0.2.25")]
        assert response.flags & dns.flags.AA


def test_exact_answer_keeps_ttl_and_ignores_case(server: TestDnsServer) -> None:
    """Names match case-insensitively; the zone's TTLs come back unchanged."""
    response = ask(server, "EXAMPLE.Test", "MX")
    assert answers(response) == [("example.test.", "MX", 300, "10 mx.example.test.")]


def test_cname_followed_within_own_data(server: TestDnsServer) -> None:
    """A CNAME and its target's records are both in the answer."""
    response = ask(server, "www.example.test", "A")
    assert answers(response) == [
        ("www.example.test.", "CNAME", 300, "mx.example.test."),
        ("mx.example.test.", "A", 120, "192.0.2.25"),
    ]
    assert ask(server, "www.example.test", "CNAME").answer[0].rdtype == dns.rdatatype.CNAME


def test_cname_to_missing_name_is_nxdomain_and_loop_is_servfail(server: TestDnsServer) -> None:
    """The rcode describes the end of the chain; a CNAME loop fails."""
    response = ask(server, "dangling.example.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [a[1] for a in answers(response)] == ["CNAME"]
    assert ask(server, "loop1.example.test", "A").rcode() == dns.rcode.SERVFAIL


def test_nxdomain_versus_nodata(server: TestDnsServer) -> None:
    """Absent names are NXDOMAIN; existing ones (or empty non-terminals) are NODATA, with SOA."""
    missing = ask(server, "missing.example.test", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.authority[0].rdtype == dns.rdatatype.SOA
    for name, rdtype in (("mx.example.test", "TXT"), ("deep.example.test", "A")):
        response = ask(server, name, rdtype)
        assert response.rcode() == dns.rcode.NOERROR, name
        assert response.answer == [], name
        assert response.authority[0].rdtype == dns.rdatatype.SOA, name


def test_wildcard_synthesises_the_queried_name(server: TestDnsServer) -> None:
    """*.wild answers for any name below wild, under the queried name."""
    response = ask(server, "anything.wild.example.test", "A")
    assert answers(response) == [("anything.wild.example.test.", "A", 300, "192.0.2.99")]


@pytest.mark.parametrize(
    ("name", "rcode"),
    [("servfail.test", dns.rcode.SERVFAIL), ("x.y.refused.test", dns.rcode.REFUSED)],
)
def test_failure_zones(server: TestDnsServer, name: str, rcode: dns.rcode.Rcode) -> None:
    """Names under servfail.test and refused.test fail that way."""
    assert ask(server, name, "A").rcode() == rcode


@pytest.mark.parametrize("tcp", [False, True])
def test_timeout_zone_never_answers(server: TestDnsServer, tcp: bool) -> None:
    """Names under timeout.test get no answer, so the client times out."""
    server.tcp_hold = 1.0
    with pytest.raises((dns.exception.Timeout, EOFError, ConnectionError, socket.timeout)):
        ask(server, "a.timeout.test", "A", tcp=tcp, timeout=0.3)


def test_truncates_over_udp_and_serves_over_tcp() -> None:
    """An answer over 512 bytes comes back with TC over UDP and in full over TCP."""
    texts = " ".join(f'"{chr(97 + i) * 200}"' for i in range(4))
    with TestDnsServer(f"big.example.test. 60 IN TXT {texts}") as server:
        udp = ask(server, "big.example.test", "TXT")
        assert udp.flags & dns.flags.TC
        assert udp.answer == []
        tcp = ask(server, "big.example.test", "TXT", tcp=True)
        assert len(tcp.answer[0][0].strings) == 4


def test_queries_are_recorded_and_reset(server: TestDnsServer) -> None:
    """Every question is logged as (name, type) until reset_queries()."""
    server.reset_queries()
    ask(server, "MX.example.test", "AAAA")
    ask(server, "nothing.example.test", "TXT")
    ask(server, "a.servfail.test", "A")
    assert server.queries == [
        Query("mx.example.test.", "AAAA"),
        Query("nothing.example.test.", "TXT"),
        Query("a.servfail.test.", "A"),
    ]
    assert server.count("mx.example.test") == 1
    assert server.count(qtype="txt") == 1
    server.reset_queries()
    assert server.queries == []


def test_records_added_and_removed_while_running(server: TestDnsServer) -> None:
    """add() and remove() take effect for the next query."""
    assert ask(server, "late.example.test", "A").rcode() == dns.rcode.NXDOMAIN
    server.add("late.example.test. 30 IN A 192.0.2.7")
    assert answers(ask(server, "late.example.test", "A")) == [
        ("late.example.test.", "A", 30, "192.0.2.7")
    ]
    assert server.remove("late.example.test", "A") == 1
    assert ask(server, "late.example.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_delay_applies_to_each_answer_and_overlaps() -> None:
    import concurrent.futures
    import time

    import dns.message
    import dns.query

    with TestDnsServer("$ORIGIN d.test.\n@ 60 IN A 192.0.2.1\n") as server:
        server.delay = 0.3
        query = dns.message.make_query("d.test.", "A")
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda _: dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2),
                    range(4),
                )
            )
        elapsed = time.monotonic() - started
    assert all(a.answer for a in answers)
    assert 0.3 <= elapsed < 0.9, elapsed
