"""A small authoritative DNS server for tests, on 127.0.0.1, UDP and TCP, built on dnslib.

    with TestDnsServer('''
        $ORIGIN example.test.
        $TTL 300
        @        IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
        @        IN MX  10 mx
        mx       IN A   192.0.2.25
    ''') as dns:
        resolver.nameservers = ["127.0.0.1"]; resolver.port = dns.port

Semantics: exact-name answers (plus ``*.`` wildcards), CNAME chains followed within its own data,
NXDOMAIN when nothing exists at or below the name, NOERROR with an empty answer (NODATA) when the
name exists or has children but not that type; the SOA of the enclosing zone goes into the
authority section of negative answers; TTLs as given. Every answer is authoritative (AA).

Failure simulation by name: anything at or under ``servfail.test.`` answers SERVFAIL, under
``refused.test.`` REFUSED, and under ``timeout.test.`` gets no answer at all; ``fail(name)``
makes any other name (and the names under it) fail the same ways.

Run by hand: ``python -m tests.support.dnsserver ZONEFILE [--port N]``.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterable
from types import TracebackType
from typing import NamedTuple

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, DNSError, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

Key = tuple[bytes, ...]

FAILURE_ZONES: dict[Key, str] = {
    (b"servfail", b"test"): "SERVFAIL",
    (b"refused", b"test"): "REFUSED",
    (b"timeout", b"test"): "TIMEOUT",
}
MAX_CNAME_CHAIN = 16
UDP_PAYLOAD = 1232  # what we advertise and honour with EDNS0 (the DNS flag day 2020 value)


class Query(NamedTuple):
    """One question received: the name (lower case, with trailing dot) and type ("A", "MX" …)."""

    name: str
    qtype: str


class DropQuery(DNSError):
    """Raised by the resolver to send no answer at all (the client times out)."""


def _key(name: DNSLabel | str) -> Key:
    """Return the case-insensitive lookup key of a domain name."""
    label = name if isinstance(name, DNSLabel) else DNSLabel(name)
    return tuple(part.lower() for part in label.label)


def _under(key: Key, zone: Key) -> bool:
    """Return whether key is zone itself or a name below it."""
    return len(key) >= len(zone) and key[len(key) - len(zone) :] == zone


def _qtype_name(qtype: int) -> str:
    """Return the mnemonic of a query type, e.g. 'MX', or 'TYPE65' for unknown ones."""
    try:
        return str(QTYPE[qtype])
    except Exception:
        return f"TYPE{qtype}"


class ZoneData:
    """Records indexed by owner name, with the set of names that exist (including parents)."""

    def __init__(self) -> None:
        """Start empty."""
        self.records: dict[Key, list[RR]] = {}
        self.existing: set[Key] = set()

    def add(self, rrs: Iterable[RR]) -> None:
        """Add records (a record already present is not added twice)."""
        for rr in rrs:
            key = _key(rr.rname)
            bucket = self.records.setdefault(key, [])
            if not any(_same_rr(rr, other) for other in bucket):
                bucket.append(rr)
            for depth in range(len(key) + 1):
                self.existing.add(key[depth:])

    def remove(self, name: str, rtype: int | None = None) -> int:
        """Remove the records of name (of one type, or all); return how many went."""
        key = _key(name)
        bucket = self.records.get(key, [])
        keep = [rr for rr in bucket if rtype is not None and rr.rtype != rtype]
        removed = len(bucket) - len(keep)
        if keep:
            self.records[key] = keep
        else:
            self.records.pop(key, None)
        self.existing = {k[d:] for k in self.records for d in range(len(k) + 1)}
        return removed

    def lookup(self, key: Key) -> tuple[list[RR], bool]:
        """Return (records at key, whether key exists), synthesising from a wildcard if needed."""
        if key in self.existing:
            return self.records.get(key, []), True
        # RFC 4592: the closest existing ancestor, then its "*" child.
        for depth in range(1, len(key)):
            encloser = key[depth:]
            if encloser in self.existing:
                wildcard = self.records.get((b"*", *encloser))
                if wildcard is None:
                    return [], False
                owner = DNSLabel(list(key))
                return [_with_name(rr, owner) for rr in wildcard], True
        return [], False

    def soa_for(self, key: Key) -> RR | None:
        """Return the SOA record of the closest enclosing zone, if we have one."""
        for depth in range(len(key) + 1):
            for rr in self.records.get(key[depth:], []):
                if rr.rtype == QTYPE.SOA:
                    return rr
        return None


def _same_rr(a: RR, b: RR) -> bool:
    """Return whether two records have the same owner, type, class and data."""
    return (
        _key(a.rname) == _key(b.rname)
        and a.rtype == b.rtype
        and a.rclass == b.rclass
        and a.rdata.toZone() == b.rdata.toZone()
    )


def _with_name(rr: RR, owner: DNSLabel) -> RR:
    """Return a copy of rr with another owner name (wildcard synthesis)."""
    return RR(rname=owner, rtype=rr.rtype, rclass=rr.rclass, ttl=rr.ttl, rdata=rr.rdata)


class ZoneResolver(BaseResolver):
    """Answer authoritatively from ZoneData; simulate failures for the *.test failure zones."""

    def __init__(self, data: ZoneData, lock: threading.Lock, stopping: threading.Event) -> None:
        """Share the data, its lock and the server's stop flag."""
        self.data = data
        self.lock = lock
        self.stopping = stopping
        self.queries: list[Query] = []
        self.tcp_hold = 10.0  # seconds a TCP query for timeout.test stays unanswered
        self.delay = 0.0  # seconds every answer waits, like a distant authoritative server
        self.failing: dict[Key, str] = {}  # names (and below) that fail, set by fail()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        """Return the reply to one request (or raise DropQuery to send nothing)."""
        reply = request.reply(ra=0, aa=1)  # copies id, RD and the question; sets QR and AA
        if request.header.opcode != 0:
            reply.header.rcode = RCODE.NOTIMP
            return reply
        if len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
            return reply
        question = request.questions[0]
        qkey = _key(question.qname)
        with self.lock:
            self.queries.append(Query(_display(qkey), _qtype_name(question.qtype)))
        if self.delay:
            self.stopping.wait(self.delay)  # each request has its own thread: delays overlap
        if any(rr.rtype == QTYPE.OPT for rr in request.ar):
            reply.add_ar(EDNS0(udp_len=UDP_PAYLOAD))
        for zone, behaviour in (*FAILURE_ZONES.items(), *self.failing.items()):
            if _under(qkey, zone):
                if behaviour == "TIMEOUT":
                    if getattr(handler, "protocol", "udp") == "tcp":
                        self.stopping.wait(self.tcp_hold)
                    raise DropQuery(f"dropped query for {_display(qkey)}")
                reply.header.rcode = getattr(RCODE, behaviour)
                return reply
        if question.qclass not in (CLASS.IN, 255):  # IN or ANY
            reply.header.rcode = RCODE.REFUSED
            return reply
        with self.lock:
            self._answer(reply, qkey, question.qtype)
        return reply

    def _answer(self, reply: DNSRecord, qkey: Key, qtype: int) -> None:
        """Fill in answer, authority and rcode for qkey/qtype (called with the lock held)."""
        key = qkey
        seen: set[Key] = set()
        for _ in range(MAX_CNAME_CHAIN):
            seen.add(key)
            rrs, exists = self.data.lookup(key)
            if not exists:
                reply.header.rcode = RCODE.NXDOMAIN
                break
            matches = [rr for rr in rrs if qtype in (QTYPE.ANY, rr.rtype)]
            if matches:
                for rr in matches:
                    reply.add_answer(rr)
                return
            cnames = [rr for rr in rrs if rr.rtype == QTYPE.CNAME]
            if not cnames or qtype == QTYPE.CNAME:
                break  # NODATA
            reply.add_answer(cnames[0])
            key = _key(cnames[0].rdata.label)
            if key in seen:
                reply.header.rcode = RCODE.SERVFAIL  # CNAME loop
                return
        soa = self.data.soa_for(key)
        if soa is not None:
            reply.add_auth(soa)


def _display(key: Key) -> str:
    """Return the presentation form of a key, lower case with a trailing dot."""
    return ".".join(part.decode("ascii", "backslashreplace") for part in key) + "."


class _Handler(DNSHandler):
    """dnslib's handler, plus: no answer for DropQuery, and UDP truncation at 512/EDNS size."""

    def get_reply(self, data: bytes) -> bytes:
        """Resolve one packet; truncate UDP answers that do not fit the client's buffer."""
        request = DNSRecord.parse(data)
        try:
            reply = self.server.resolver.resolve(request, self)
            rdata = reply.pack()
        except DropQuery:
            raise
        except Exception:  # a bug here must show, and must not look like a timeout
            traceback.print_exc(file=sys.stderr)
            reply = request.reply(ra=0, aa=1)
            reply.header.rcode = RCODE.SERVFAIL
            rdata = reply.pack()
        if self.protocol == "udp":
            limit = 512
            for rr in request.ar:
                if rr.rtype == QTYPE.OPT:
                    limit = max(512, min(int(rr.rclass), UDP_PAYLOAD))
            if len(rdata) > limit:
                rdata = _truncated(reply).pack()
        return rdata


def _truncated(reply: DNSRecord) -> DNSRecord:
    """Return reply with TC set and only header and question (the client retries over TCP)."""
    short = DNSRecord(header=reply.header, q=reply.q)
    short.header.tc = 1
    return short


class _QuietLogger(DNSLogger):
    """Log nothing but errors (to stderr), and not the deliberate drops."""

    def __init__(self) -> None:
        """Disable every hook except log_error."""
        super().__init__(log="-request,-reply,-truncated", prefix=False)

    def log_error(self, handler: DNSHandler, e: Exception) -> None:
        """Report a malformed packet or a failure to answer, except DropQuery."""
        if not isinstance(e, DropQuery):
            print(f"dnsserver: error from {handler.client_address}: {e}", file=sys.stderr)


class TestDnsServer:
    """An authoritative DNS server on 127.0.0.1 (UDP and TCP, same ephemeral port) for tests."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, zone_text: str = "", port: int = 0, origin: str = "", ttl: int = 300
    ) -> None:
        """Parse zone_text (RFC 1035 master-file form); port 0 picks a free port at start()."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._data = ZoneData()
        self._resolver = ZoneResolver(self._data, self._lock, self._stopping)
        self._servers: list[DNSServer] = []
        self._requested_port = port
        self._origin = origin
        self._ttl = ttl
        self.port = 0
        if zone_text:
            self.add(zone_text)

    # -- data ---------------------------------------------------------------------------------

    def add(self, zone_text: str, origin: str | None = None) -> list[RR]:
        """Add the records of zone_text (works while running); return them."""
        origin = self._origin if origin is None else origin
        rrs = RR.fromZone(zone_text, origin=origin, ttl=self._ttl)
        with self._lock:
            self._data.add(rrs)
        return rrs

    def add_records(self, rrs: Iterable[RR]) -> None:
        """Add dnslib RR objects."""
        with self._lock:
            self._data.add(list(rrs))

    def fail(self, name: str, behaviour: str = "SERVFAIL") -> None:
        """Make ``name`` and the names under it fail: SERVFAIL, REFUSED or TIMEOUT."""
        if behaviour not in FAILURE_ZONES.values():
            raise ValueError(f"behaviour {behaviour!r}")
        with self._lock:
            self._resolver.failing[_key(name)] = behaviour

    def remove(self, name: str, qtype: str | None = None) -> int:
        """Remove the records of a name (all, or of one type such as "TXT"); return the count."""
        rtype = getattr(QTYPE, qtype.upper()) if qtype else None
        with self._lock:
            return self._data.remove(name, rtype)

    # -- queries seen -------------------------------------------------------------------------

    @property
    def queries(self) -> list[Query]:
        """Return a copy of the questions received so far, oldest first."""
        with self._lock:
            return list(self._resolver.queries)

    def reset_queries(self) -> None:
        """Forget the questions received so far."""
        with self._lock:
            self._resolver.queries.clear()

    def count(self, name: str | None = None, qtype: str | None = None) -> int:
        """Return how many questions matched name (any case, dot optional) and/or qtype."""
        want = _display(_key(name)) if name is not None else None
        return sum(
            1
            for q in self.queries
            if (want is None or q.name == want) and (qtype is None or q.qtype == qtype.upper())
        )

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """Return "127.0.0.1:PORT", the form [dns] nameservers takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def delay(self) -> float:
        """Return how long every answer waits (0: answer at once)."""
        return self._resolver.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._resolver.delay = seconds

    @property
    def tcp_hold(self) -> float:
        """Return how long a TCP query under timeout.test stays unanswered before closing."""
        return self._resolver.tcp_hold

    @tcp_hold.setter
    def tcp_hold(self, seconds: float) -> None:
        self._resolver.tcp_hold = seconds

    def start(self) -> TestDnsServer:
        """Bind UDP and TCP on the same port on 127.0.0.1 and serve in background threads."""
        if self._servers:
            return self
        self._stopping.clear()
        attempts = 1 if self._requested_port else 20
        last_error: OSError | None = None
        for _ in range(attempts):
            port = self._requested_port or _free_udp_port()
            try:
                udp = DNSServer(
                    self._resolver,
                    address="127.0.0.1",
                    port=port,
                    tcp=False,
                    logger=_QuietLogger(),
                    handler=_Handler,
                )
            except OSError as exc:
                last_error = exc
                continue
            try:
                tcp = DNSServer(
                    self._resolver,
                    address="127.0.0.1",
                    port=port,
                    tcp=True,
                    logger=_QuietLogger(),
                    handler=_Handler,
                )
            except OSError as exc:
                udp.server.server_close()
                last_error = exc
                continue
            self._servers = [udp, tcp]
            self.port = port
            for server in self._servers:
                # dnslib's start_thread() polls for shutdown every 0.5 s; tests stop faster.
                server.thread = threading.Thread(
                    target=server.server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name=f"dnsserver-{port}",
                    daemon=True,
                )
                server.thread.start()
            return self
        raise OSError(f"could not bind a DNS server port on 127.0.0.1: {last_error}")

    def stop(self) -> None:
        """Stop serving and close both sockets."""
        self._stopping.set()
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []

    def __enter__(self) -> TestDnsServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


def _free_udp_port() -> int:
    """Return a UDP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    """Serve a zone file until interrupted."""
    parser = argparse.ArgumentParser(description="Serve a zone file on 127.0.0.1 for testing.")
    parser.add_argument("zonefile", help="RFC 1035 master file ($ORIGIN and $TTL understood)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--origin", default="", help="origin for relative names")
    args = parser.parse_args(argv)
    with open(args.zonefile) as fh:
        text = fh.read()
    server = TestDnsServer(text, port=args.port, origin=args.origin)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: done.set())
    server.start()
    print(f"serving {args.zonefile} on {server.address} (UDP and TCP); Ctrl-C stops", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
