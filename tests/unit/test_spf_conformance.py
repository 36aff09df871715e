"""The openspf RFC 7208 test suite run through the SPF check and the project's DNS layer.

Each scenario's ``zonedata`` is served by a real DNS server on 127.0.0.1 (UDP and TCP), and
every question pyspf asks goes through ``mxguard.dns.Resolver`` and a fresh
``ConnectionLookups`` per test, as in production: this proves that our DNS layer and its
caching keep pyspf's conformance. pyspf 2.0.14 passes the whole suite with the suite's own
in-memory DNS; a test that fails here is marked below with the reason it cannot pass over the
wire (``KNOWN_FAILURES``), and ``test_suite_summary`` counts the passes.

How the suite's zone data is served (its conventions, read from the suite and pyspf's driver):

* ``SPF`` entries are type 99 records, and are also served as TXT records unless the name has
  a ``TXT`` entry of its own; ``TXT: NONE`` means "no TXT record" (and no copy of the SPF one).
* A TXT or SPF value is a string or a list of strings (the record's character-strings); text
  is sent as UTF-8, and a string longer than 255 bytes is split into 255-byte
  character-strings. An empty list (a record without any character-string, which cannot be
  written on the wire) is served as one empty character-string: pyspf ignores both alike.
* ``TIMEOUT`` makes the questions for that name go unanswered, except those of the types
  listed before it (they are answered); names beginning ``error.`` that have no data time
  out as well.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import spf as pyspf
import yaml
from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RR, TXT, A, DNSLabel, DNSRecord
from dnslib.server import DNSHandler

from mxguard.checks import spf as spf_check
from mxguard.core.dns import ConnectionLookups, Resolver
from tests.support.dnsserver import DropQuery, TestDnsServer, ZoneResolver

SUITE = Path(__file__).resolve().parents[1] / "data" / "spf" / "rfc7208-tests.yml"

RESOLVER_TIMEOUT = 0.5  # seconds per DNS question: the TIMEOUT entries cost this much
SPF_TIMEOUT = 5.0  # seconds for one evaluation ([spf] timeout)
TTL = 300

# Suite tests that cannot pass over real DNS, each with the reason. Every other test must pass.
KNOWN_FAILURES: dict[str, str] = {
    "ptr-mechanism-syntax/ptr-cname-loop": (
        "over the wire a CNAME loop is a DNS error, not empty data: the server answers SERVFAIL "
        "(as recursive resolvers do; an authoritative loop makes dnspython raise ChainTooLong), "
        "so the A lookup of the PTR name is 'could not tell' and pyspf turns it into temperror "
        "instead of skipping the name (RFC 7208 5.5/7). The suite's in-memory DNS hands pyspf "
        "the loop itself, which pyspf treats as no data: neutral."
    ),
}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One document of the suite: its records, and which questions go unanswered."""

    description: str
    records: tuple[RR, ...]
    answered_before_timeout: dict[str, frozenset[str]]  # name -> types answered despite TIMEOUT


@dataclass(frozen=True, slots=True)
class SuiteTest:
    """One test of the suite."""

    scenario: Scenario
    name: str
    host: str
    mailfrom: str
    helo: str
    results: tuple[str, ...]
    explanation: str | None

    @property
    def id(self) -> str:
        """``scenario-description/test-name``, slugged."""
        return f"{_slug(self.scenario.description)}/{_slug(self.name)}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What our check said for one suite test."""

    result: str
    explanation: str


def _slug(text: str) -> str:
    """Lower case, with every run of other characters than letters and digits a single '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _character_strings(value: str | list[str]) -> list[bytes]:
    """The character-strings of a TXT/SPF value: UTF-8, each at most 255 bytes, at least one."""
    parts = [value] if isinstance(value, str) else list(value)
    strings = []
    for part in parts:
        data = part.encode("utf-8")
        strings.append(data[:255])
        strings.extend(data[i : i + 255] for i in range(255, len(data), 255))
    return strings or [b""]


def _rdata(rtype: str, value: Any) -> tuple[int, Any]:
    """The dnslib (type, rdata) for one zonedata entry."""
    if rtype == "A":
        return QTYPE.A, A(value)
    if rtype == "AAAA":
        return QTYPE.AAAA, AAAA(str(ipaddress.IPv6Address(value)))
    if rtype == "MX":
        preference, exchange = value
        return QTYPE.MX, MX(exchange, preference)
    if rtype == "PTR":
        return QTYPE.PTR, PTR(value)
    if rtype == "CNAME":
        return QTYPE.CNAME, CNAME(value)
    if rtype in ("TXT", "SPF"):  # type 99 has the wire form of TXT
        return getattr(QTYPE, rtype), TXT(_character_strings(value))
    raise ValueError(f"zonedata type {rtype!r} is not supported")


def _records(name: str, entries: list[Any]) -> tuple[list[RR], frozenset[str] | None]:
    """The records of one name, and the types answered before its TIMEOUT (None: no TIMEOUT)."""
    records: list[RR] = []
    spf_values: list[Any] = []
    has_txt = False
    answered: frozenset[str] | None = None
    for entry in entries:
        if entry == "TIMEOUT":
            if answered is None:
                answered = frozenset(QTYPE[rr.rtype] for rr in records)
            continue
        ((rtype, value),) = entry.items()
        has_txt = has_txt or rtype == "TXT"
        if value == "NONE":
            continue
        if rtype == "SPF":
            spf_values.append(value)
        qtype, rdata = _rdata(rtype, value)
        records.append(RR(DNSLabel(name), qtype, rdata=rdata, ttl=TTL))
    if not has_txt:  # the suite's SPF records stand for TXT records too
        records.extend(
            RR(DNSLabel(name), QTYPE.TXT, rdata=_rdata("TXT", v)[1], ttl=TTL) for v in spf_values
        )
    return records, answered


def _load_suite() -> list[SuiteTest]:
    """Every test of the suite, in file order."""
    tests = []
    with SUITE.open("rb") as stream:
        for document in yaml.safe_load_all(stream):
            records: list[RR] = []
            timeouts: dict[str, frozenset[str]] = {}
            for name, entries in (document.get("zonedata") or {}).items():
                rrs, answered = _records(name, entries)
                records.extend(rrs)
                if answered is not None:
                    timeouts[name.lower().rstrip(".")] = answered
            scenario = Scenario(document["description"], tuple(records), timeouts)
            for test_name, test in document["tests"].items():
                result = test["result"]
                tests.append(
                    SuiteTest(
                        scenario=scenario,
                        name=test_name,
                        host=test["host"],
                        mailfrom=test["mailfrom"],
                        helo=test["helo"],
                        results=tuple(result) if isinstance(result, list) else (result,),
                        explanation=test.get("explanation"),
                    )
                )
    return tests


class _ScenarioResolver(ZoneResolver):
    """The test server's answers, plus the scenario's TIMEOUT rules (no answer at all)."""

    def __init__(self, *args: Any, timeouts: dict[str, frozenset[str]]) -> None:
        """``timeouts`` maps a name to the record types still answered for it."""
        super().__init__(*args)
        self.timeouts = timeouts

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        """Drop the questions the scenario says time out; answer the others from the zone."""
        if len(request.questions) == 1:
            question = request.questions[0]
            name = str(question.qname).lower().rstrip(".")
            answered = self.timeouts.get(name)
            if answered is not None and QTYPE[question.qtype] not in answered:
                raise DropQuery(f"TIMEOUT in the scenario for {name}")
            key = tuple(label.lower() for label in question.qname.label)
            if name.startswith("error.") and not self.data.lookup(key)[1]:
                raise DropQuery(f"error. name without data: {name}")
        return super().resolve(request, handler)


class ScenarioDnsServer(TestDnsServer):
    """A TestDnsServer that serves one scenario of the suite."""

    def __init__(self, scenario: Scenario) -> None:
        """Load the scenario's records and its TIMEOUT rules."""
        super().__init__()
        self._resolver = _ScenarioResolver(
            self._data, self._lock, self._stopping, timeouts=scenario.answered_before_timeout
        )
        self.add_records(scenario.records)


class ScenarioServers:
    """One DNS server and one resolver at a time, for the scenario being tested.

    Tests run in file order, so each scenario's server starts once. The resolver (and its
    cache) is per scenario: the suite reuses names across scenarios with other data."""

    def __init__(self) -> None:
        """Nothing runs yet."""
        self._scenario: Scenario | None = None
        self._server: ScenarioDnsServer | None = None
        self._resolver: Resolver | None = None

    def resolver_for(self, scenario: Scenario) -> Resolver:
        """The resolver that asks the running server of ``scenario`` (started if needed)."""
        if scenario is not self._scenario or self._resolver is None:
            self.close()
            self._server = ScenarioDnsServer(scenario).start()
            self._resolver = Resolver(
                nameservers=(("127.0.0.1", self._server.port),),
                timeout=RESOLVER_TIMEOUT,
                cache_size=1000,
            )
            self._scenario = scenario
        return self._resolver

    def close(self) -> None:
        """Stop the server and the resolver of the current scenario."""
        if self._resolver is not None:
            self._resolver.close()
        if self._server is not None:
            self._server.stop()
        self._scenario = self._server = self._resolver = None


SUITE_TESTS = _load_suite()
OUTCOMES: dict[str, Outcome] = {}  # per test id, so the summary does not evaluate twice


@pytest.fixture(scope="module")
def servers() -> Iterator[ScenarioServers]:
    """The per-scenario DNS servers of this module."""
    servers = ScenarioServers()
    yield servers
    servers.close()


def run(test: SuiteTest, servers: ScenarioServers) -> Outcome:
    """Evaluate one suite test through the SPF check's ``evaluate`` (remembered by id)."""
    if test.id not in OUTCOMES:
        view = ConnectionLookups(servers.resolver_for(test.scenario))
        ip = ipaddress.ip_address(test.host)
        result, explanation = spf_check.evaluate(ip, test.mailfrom, test.helo, view, SPF_TIMEOUT)
        OUTCOMES[test.id] = Outcome(result, explanation)
    return OUTCOMES[test.id]


def expected_explanation(test: SuiteTest, result: str) -> str | None:
    """The explanation the suite expects, if it names one; ``DEFAULT`` stands for the
    implementation's own text (the domain gave none), pyspf's for this result."""
    if test.explanation == "DEFAULT":
        return pyspf.EXPLANATIONS[result]
    return test.explanation


def passes(test: SuiteTest, outcome: Outcome) -> bool:
    """Whether the outcome is one the suite accepts (and the explanation, when it gives one)."""
    if outcome.result not in test.results:
        return False
    explanation = expected_explanation(test, outcome.result)
    return explanation is None or outcome.explanation == explanation


def _params() -> list[Any]:
    marks = {
        test.id: [pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[test.id])]
        for test in SUITE_TESTS
        if test.id in KNOWN_FAILURES
    }
    return [pytest.param(t, id=t.id, marks=marks.get(t.id, ())) for t in SUITE_TESTS]


def test_suite_ids_are_unique_and_known_failures_exist() -> None:
    ids = [test.id for test in SUITE_TESTS]
    assert len(ids) == len(set(ids))
    assert set(KNOWN_FAILURES) <= set(ids)


@pytest.mark.parametrize("test", _params())
def test_rfc7208(test: SuiteTest, servers: ScenarioServers) -> None:
    outcome = run(test, servers)
    assert outcome.result in test.results
    explanation = expected_explanation(test, outcome.result)
    if explanation is not None:
        assert outcome.explanation == explanation


def test_suite_summary(servers: ScenarioServers) -> None:
    """Counts the suite's passes: every test but the known failures."""
    started = time.monotonic()
    failing = sorted(t.id for t in SUITE_TESTS if not passes(t, run(t, servers)))
    passed = len(SUITE_TESTS) - len(failing)
    print(
        f"RFC 7208 suite: {passed} of {len(SUITE_TESTS)} pass "
        f"({time.monotonic() - started:.1f} s for the tests not run before)"
    )
    assert failing == sorted(KNOWN_FAILURES)
    assert passed == len(SUITE_TESTS) - len(KNOWN_FAILURES)
