"""The SPF check against a real DNS server: each result's default action and every on_<result>
option, the HELO identity and Authentication-Results, Received-SPF, the exemptions, monitor
mode, the option errors, and hostile records (include loops, too many includes, a record that
only fits over TCP, timeouts) that must neither hang the connection past [spf] timeout nor
crash it."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dnslib import QTYPE, RR, TXT, DNSLabel

from mxguard.checks import spf
from mxguard.core import config
from mxguard.core.check import Services
from mxguard.core.dns import ConnectionLookups, Resolver, Unknown
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Envelope, Facts, Stage
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline, StageResult
from mxguard.core.verdict import Action, Verdict
from mxguard.daemon import trace_fields as headers
from mxguard.mail.address import parse_path
from tests.support.dnsserver import TestDnsServer

CLIENT = "192.0.2.10"
RESOLVER_TIMEOUT = 0.5  # seconds for one DNS question ([dns] timeout)
SPF_TIMEOUT = 2.0  # seconds for the SPF check ([spf] timeout) in the hostile-record tests
# A question already asked when the time runs out is waited for: one resolver timeout at most,
# plus scheduling slack.
TIME_BOUND = SPF_TIMEOUT + RESOLVER_TIMEOUT + 0.5
SITE = "[milter]\nhostnames = mx.example.org\nauthserv_id = mx.example.org\n"

ZONE = f"""
$TTL 300
example.            IN SOA ns.example. hostmaster.example. 1 3600 600 86400 60
; one domain per result, for the client {CLIENT}
pass.example.       IN TXT "v=spf1 ip4:{CLIENT} -all"
fail.example.       IN TXT "v=spf1 ip4:192.0.2.99 -all"
explained.example.  IN TXT "v=spf1 ip4:192.0.2.99 -all exp=why.explained.example"
why.explained.example. IN TXT "%{{i}} is not one of %{{d}}'s mail servers"
softfail.example.   IN TXT "v=spf1 ip4:192.0.2.99 ~all"
neutral.example.    IN TXT "v=spf1 ?all"
none.example.       IN A   192.0.2.99
none.example.       IN TXT "not an SPF record"
permerror.example.  IN TXT "v=spf1 ip4:192.0.2.999 -all"
temperror.example.  IN TXT "v=spf1 a:host.servfail.test -all"
; HELO names
mx.pass.example.    IN A   {CLIENT}
mx.pass.example.    IN TXT "v=spf1 a -all"
helo-fail.example.  IN TXT "v=spf1 -all"
; an include loop (the other hostile records come from hostile_records())
loop1.example.      IN TXT "v=spf1 include:loop2.example -all"
loop2.example.      IN TXT "v=spf1 include:loop1.example -all"
"""


def txt_record(name: str, text: str) -> RR:
    """A TXT record of any length, split into 255-byte character-strings."""
    data = text.encode()
    return RR(
        DNSLabel(name),
        QTYPE.TXT,
        rdata=TXT([data[i : i + 255] for i in range(0, len(data), 255)]),
        ttl=300,
    )


def big_record(listed: bool) -> str:
    """A 4 KB SPF record of ip4 mechanisms; the client's address is the last one if ``listed``."""
    mechanisms = [f"ip4:198.51.100.{n}" for n in range(250)]
    if listed:
        mechanisms.append(f"ip4:{CLIENT}")
    return f"v=spf1 {' '.join(mechanisms)} -all"


def includes(domain: str, targets: list[str]) -> RR:
    """``domain``'s SPF record: an include of each target, then -all."""
    return txt_record(domain, f"v=spf1 {' '.join('include:' + t for t in targets)} -all")


def hostile_records() -> list[RR]:
    """Twenty includes (many.example); nine plain includes (chain.example); nine includes
    whose exp= lookups all time out, which pyspf ignores and goes on (swallowed.example and,
    with other exp= names, helo-swallowed.example); a 4 KB record with and without the client."""
    many = [f"i{n:02}.many.example" for n in range(1, 21)]
    chain = [f"c{n}.chain.example" for n in range(1, 10)]
    records = [
        includes("many.example", many),
        includes("chain.example", chain),
        txt_record("big-pass.example", big_record(listed=True)),
        txt_record("big-fail.example", big_record(listed=False)),
    ]
    records += [
        txt_record(name, f"v=spf1 ip4:198.51.100.{n} -all") for n, name in enumerate(many + chain)
    ]
    for domain in ("swallowed.example", "helo-swallowed.example"):
        targets = [f"t{n}.{domain}" for n in range(1, 10)]
        records.append(includes(domain, targets))
        records += [txt_record(name, f"v=spf1 ?all exp={name}.timeout.test") for name in targets]
    return records


@pytest.fixture(scope="module")
def server() -> Iterator[TestDnsServer]:
    with TestDnsServer(ZONE) as dns:
        dns.add_records(hostile_records())
        yield dns


@dataclass
class Session:
    """What the MAIL stage produced, and how long it took."""

    result: StageResult
    elapsed: float

    @property
    def verdict(self) -> Verdict | None:
        """The SPF check's verdict (None when it said nothing)."""
        assert len(self.result.verdicts) <= 1
        return self.result.verdicts[0] if self.result.verdicts else None

    @property
    def decision(self) -> Verdict | None:
        """The refusal the MTA is told to give, if any."""
        return self.result.decision


def converse(
    server: TestDnsServer,
    sender: str = "<someone@pass.example>",
    ini: str = "",
    *,
    helo: str = "mx.pass.example",
    ip: str = CLIENT,
    site: str = SITE,
    slow: float = 0.0,
    **connection: object,
) -> Session:
    """Run the MAIL stage through a pipeline with only the spf check, on a fresh resolver."""
    settings = config.load("t.ini", text=site + "[spf]\n" + ini)
    resolver = Resolver(
        nameservers=(("127.0.0.1", server.port),), timeout=RESOLVER_TIMEOUT, cache_size=0
    )
    clock = lambda: 1_000_000.0  # noqa: E731
    dns, monotonic = ConnectionLookups(resolver), time.monotonic
    if slow:
        # A distant server without the wait: each answer moves the check's own clock on.
        dns = monotonic = SlowAnswers(dns, slow)  # type: ignore[assignment]
    services = Services(
        site=settings.milter,
        dns=dns,
        clock=clock,
        notices=Notices(clock),
        monotonic=monotonic,
    )
    pipeline = Pipeline([(spf.CHECK, settings.checks["spf"])])
    facts = Facts(
        Stage.MAIL,
        Connection(client_ip=ipaddress.ip_address(ip), helo=helo, **connection),
        Envelope(sender, parse_path(sender, allow_null=True)),
    )
    started = time.monotonic()
    try:
        result = pipeline.run(Stage.MAIL, facts, services)
    finally:
        resolver.close()
    return Session(result, time.monotonic() - started)


def reply(verdict: Verdict | None) -> tuple[str, str] | None:
    """The (code, enhanced code) of a verdict's reply, or None."""
    if verdict is None or verdict.reply is None:
        return None
    return verdict.reply.smtp_code, verdict.reply.dsn_code


def spf_results(verdict: Verdict | None) -> list[tuple[str, str, str]]:
    """(result, identity, subject) of each SPF entry for Authentication-Results."""
    assert verdict is not None
    return [(a.result, a.properties[0][1], a.properties[0][2]) for a in verdict.auth]


# -- each result's default action --------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "result", "action", "code"),
    [
        pytest.param("pass.example", "pass", Action.CONTINUE, None, id="pass-continues"),
        pytest.param("neutral.example", "neutral", Action.CONTINUE, None, id="neutral-continues"),
        pytest.param("none.example", "none", Action.CONTINUE, None, id="none-continues"),
        pytest.param("fail.example", "fail", Action.REJECT, ("550", "5.7.1"), id="fail-rejects"),
        pytest.param("softfail.example", "softfail", Action.TAG, None, id="softfail-tags"),
        pytest.param("permerror.example", "permerror", Action.TAG, None, id="permerror-tags"),
        pytest.param(
            "temperror.example", "temperror", Action.TEMPFAIL, ("451", "4.4.3"), id="temperror"
        ),
    ],
)
def test_default_action_per_result(
    server: TestDnsServer, domain: str, result: str, action: Action, code: tuple[str, str] | None
) -> None:
    session = converse(server, f"<someone@{domain}>")
    verdict = session.verdict
    assert verdict is not None
    assert (verdict.outcome, verdict.action, reply(verdict)) == (f"spf.{result}", action, code)
    assert session.decision is (verdict if verdict.refuses else None)
    assert spf_results(verdict)[0] == (result, "mailfrom", f"someone@{domain}")


@pytest.mark.parametrize(
    ("domain", "text"),
    [
        pytest.param(
            "fail.example",
            f"spf: someone@fail.example does not designate {CLIENT} as permitted sender: "
            "SPF fail - not authorized",
            id="pyspf-default-explanation",
        ),
        pytest.param(
            "explained.example",
            f"spf: someone@explained.example does not designate {CLIENT} as permitted sender: "
            f"{CLIENT} is not one of explained.example's mail servers",
            id="domain-exp-explanation",
        ),
    ],
)
def test_fail_text_carries_the_explanation(server: TestDnsServer, domain: str, text: str) -> None:
    decision = converse(server, f"<someone@{domain}>").decision
    assert decision is not None and decision.text == text


def test_temperror_text_names_the_domain_and_the_dns_failure(server: TestDnsServer) -> None:
    decision = converse(server, "<someone@temperror.example>").decision
    assert decision is not None
    assert decision.text.startswith(
        "spf: cannot evaluate SPF of someone@temperror.example now (SPF Temporary Error: DNS "
    )
    assert "host.servfail.test" in decision.text


# -- every on_<result> option ------------------------------------------------------------------

DOMAIN_OF = {
    "pass": "pass.example",
    "neutral": "neutral.example",
    "none": "none.example",
    "fail": "fail.example",
    "softfail": "softfail.example",
    "permerror": "permerror.example",
    "temperror": "temperror.example",
}
EXPECTED = {
    "continue": (Action.CONTINUE, None),
    "tag": (Action.TAG, None),
    "reject": (Action.REJECT, ("550", "5.7.1")),
    "tempfail": (Action.TEMPFAIL, ("451", "4.7.1")),  # a policy deferral
}


@pytest.mark.parametrize(
    ("result", "setting"),
    [
        pytest.param(result, setting, id=f"on_{result}={setting}")
        for result in spf.RESULTS
        for setting in spf.ACTIONS
        if (result, setting) != ("temperror", "reject")  # refused by the schema, tested below
    ],
)
def test_on_result_option(server: TestDnsServer, result: str, setting: str) -> None:
    session = converse(server, f"<someone@{DOMAIN_OF[result]}>", f"on_{result} = {setting}\n")
    verdict = session.verdict
    assert verdict is not None and verdict.outcome == f"spf.{result}"
    action, code = EXPECTED[setting]
    if (result, setting) == ("temperror", "tempfail"):
        code = ("451", "4.4.3")  # a DNS failure
    assert (verdict.action, reply(verdict)) == (action, code)
    assert session.decision is (verdict if verdict.refuses else None)
    if verdict.refuses:
        assert verdict.text.startswith("spf: ")
    assert spf_results(verdict)[0][0] == result


# -- the HELO identity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "helo", "ini", "expected"),
    [
        pytest.param(
            "<someone@pass.example>",
            "helo-fail.example",
            "",
            [("pass", "mailfrom", "someone@pass.example"), ("fail", "helo", "helo-fail.example")],
            id="both-identities",
        ),
        pytest.param(
            "<someone@pass.example>",
            "helo-fail.example",
            "check_helo = no\n",
            [("pass", "mailfrom", "someone@pass.example")],
            id="check_helo-off",
        ),
        pytest.param(
            "<someone@pass.example>",
            f"[{CLIENT}]",
            "",
            [("pass", "mailfrom", "someone@pass.example")],
            id="helo-address-literal",
        ),
        pytest.param(
            "<someone@pass.example>",
            CLIENT,
            "",
            [("pass", "mailfrom", "someone@pass.example")],
            id="helo-bare-address",
        ),
        pytest.param("<>", "mx.pass.example", "", [("pass", "helo", "mx.pass.example")], id="null"),
        pytest.param(
            "<>",
            "helo-fail.example",
            "check_helo = no\n",
            [("fail", "helo", "helo-fail.example")],
            id="null-sender-checks-helo-even-if-off",
        ),
    ],
)
def test_identities(
    server: TestDnsServer, sender: str, helo: str, ini: str, expected: list[tuple[str, str, str]]
) -> None:
    assert spf_results(converse(server, sender, ini, helo=helo).verdict) == expected


def test_a_quoted_local_part_with_an_at_sign_is_judged_by_the_last_domain(
    server: TestDnsServer,
) -> None:
    """pyspf splits at the first @ and asked for other.example@pass.example's record."""
    session = converse(server, '<"user@other.example"@pass.example>', helo="mx.pass.example")
    assert spf_results(session.verdict) == [
        ("pass", "mailfrom", "user@other.example@pass.example"),
        ("pass", "helo", "mx.pass.example"),
    ]


def test_mail_from_decides_while_helo_fails(server: TestDnsServer) -> None:
    session = converse(server, "<someone@pass.example>", helo="helo-fail.example")
    assert session.verdict is not None and session.verdict.outcome == "spf.pass"
    assert session.verdict.action is Action.CONTINUE and session.decision is None


def test_both_results_in_authentication_results(server: TestDnsServer) -> None:
    session = converse(server, "<someone@pass.example>", helo="helo-fail.example")
    assert headers.authentication_results("mx.example.org", session.result.verdicts) == (
        "mx.example.org; spf=pass smtp.mailfrom=someone@pass.example; "
        "spf=fail smtp.helo=helo-fail.example"
    )


def test_null_sender_is_decided_by_helo(server: TestDnsServer) -> None:
    session = converse(server, "<>", helo="helo-fail.example")
    decision = session.decision
    assert decision is not None and decision.outcome == "spf.fail"
    assert reply(decision) == ("550", "5.7.1")
    assert decision.text.startswith(
        f"spf: HELO helo-fail.example does not designate {CLIENT} as permitted sender"
    )
    assert headers.authentication_results("mx.example.org", [decision]) == (
        "mx.example.org; spf=fail smtp.helo=helo-fail.example"
    )


@pytest.mark.parametrize("helo", [f"[{CLIENT}]", CLIENT, ""], ids=["literal", "bare-ip", "none"])
def test_null_sender_without_a_helo_name_is_not_checked(server: TestDnsServer, helo: str) -> None:
    session = converse(server, "<>", helo=helo)
    assert session.verdict is None and session.decision is None
    assert session.elapsed < 1.0


# -- Received-SPF ------------------------------------------------------------------------------

# RFC 7208 section 9.1: result [comment] key=value; ... (values dot-atoms or quoted strings).
RECEIVED_SPF = re.compile(
    r"(pass|fail|softfail|neutral|none|temperror|permerror)"
    r" \([^()]*\)"
    r"( [a-z-]+=([A-Za-z0-9.:!#$%&'*+/=?^_`{|}~-]+|\"[^\"\\]*\");)+"
)


@pytest.mark.parametrize(
    ("sender", "helo", "value"),
    [
        pytest.param(
            "<someone@pass.example>",
            "mx.pass.example",
            f"pass (mx.example.org: sender SPF authorized) client-ip={CLIENT}; "
            'envelope-from="someone@pass.example"; helo="mx.pass.example"; '
            "identity=mailfrom; receiver=mx.example.org;",
            id="mailfrom-pass",
        ),
        pytest.param(
            "<someone@softfail.example>",
            "mx.pass.example",
            "softfail (mx.example.org: domain owner discourages use of this host) "
            f'client-ip={CLIENT}; envelope-from="someone@softfail.example"; '
            'helo="mx.pass.example"; identity=mailfrom; receiver=mx.example.org;',
            id="mailfrom-softfail",
        ),
        pytest.param(
            "<>",
            "mx.pass.example",
            f"pass (mx.example.org: sender SPF authorized) client-ip={CLIENT}; "
            'envelope-from="mx.pass.example"; helo="mx.pass.example"; identity=helo; '
            "receiver=mx.example.org;",
            id="null-sender-helo",
        ),
    ],
)
def test_received_spf(server: TestDnsServer, sender: str, helo: str, value: str) -> None:
    verdict = converse(server, sender, "received_spf = yes\n", helo=helo).verdict
    assert verdict is not None and verdict.headers == (("Received-SPF", value),)
    assert RECEIVED_SPF.fullmatch(value)


def test_received_spf_is_off_by_default(server: TestDnsServer) -> None:
    verdict = converse(server).verdict
    assert verdict is not None and verdict.headers == ()


def test_received_spf_comment_cannot_break_the_field(server: TestDnsServer) -> None:
    verdict = converse(server, "<someone@explained.example>", "received_spf = yes\n").verdict
    assert verdict is not None
    ((name, value),) = verdict.headers
    assert name == "Received-SPF" and RECEIVED_SPF.fullmatch(value)
    assert "\n" not in value and "\r" not in value


# -- who is not checked ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ini", "connection"),
    [
        pytest.param("", {"trusted": True}, id="trusted-network"),
        pytest.param("", {"auth_user": "carol@example.org"}, id="authenticated"),
        pytest.param(f"trusted_forwarders = {CLIENT}\n", {}, id="forwarder-ip"),
        pytest.param("trusted_forwarders = 192.0.2.0/24\n", {}, id="forwarder-network"),
        pytest.param(
            "trusted_forwarders = 198.51.100.0/24, 192.0.2.0/28\n", {}, id="forwarder-in-list"
        ),
        pytest.param(
            "trusted_forwarder_names = fwd.example.net\n",
            {"client_name": "fwd.example.net"},
            id="forwarder-name",
        ),
        pytest.param(
            "trusted_forwarder_names = FWD.example.net\n",
            {"client_name": "fwd.EXAMPLE.net."},
            id="forwarder-name-any-case",
        ),
        pytest.param(
            "trusted_forwarder_names = .forwarders.example\n",
            {"client_name": "mx1.forwarders.example"},
            id="forwarder-suffix",
        ),
    ],
)
def test_exempt_clients_are_not_checked(
    server: TestDnsServer, ini: str, connection: dict[str, object]
) -> None:
    server.reset_queries()
    session = converse(
        server, "<someone@fail.example>", ini, helo="helo-fail.example", **connection
    )
    assert session.verdict is None and session.decision is None
    assert server.queries == []


@pytest.mark.parametrize(
    ("ini", "client_name"),
    [
        pytest.param("trusted_forwarders = 192.0.2.128/25\n", "", id="other-network"),
        pytest.param(
            "trusted_forwarder_names = .forwarders.example\n",
            "evilforwarders.example",
            id="suffix-is-label-aligned",
        ),
        pytest.param(
            "trusted_forwarder_names = fwd.example.net\n",
            "mx.fwd.example.net",
            id="bare-name-is-that-host-only",
        ),
        pytest.param(
            "trusted_forwarder_names = fwd.example.net\n",
            "fwd.example.net.evil.example",
            id="name-as-prefix",
        ),
        pytest.param("trusted_forwarder_names = fwd.example.net\n", "unknown", id="unverified"),
    ],
)
def test_other_clients_are_checked(server: TestDnsServer, ini: str, client_name: str) -> None:
    decision = converse(server, "<someone@fail.example>", ini, client_name=client_name).decision
    assert decision is not None and decision.outcome == "spf.fail"


# -- monitor mode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "held_back"),
    [
        pytest.param("fail.example", Action.REJECT, id="fail"),
        pytest.param("temperror.example", Action.TEMPFAIL, id="temperror"),
    ],
)
@pytest.mark.parametrize(
    ("ini", "site"),
    [
        pytest.param("mode = monitor\n", SITE, id="spf-mode"),
        pytest.param("", SITE + "mode = monitor\n", id="milter-mode"),
    ],
)
def test_monitor_mode_tags_what_it_would_refuse(
    server: TestDnsServer, domain: str, held_back: Action, ini: str, site: str
) -> None:
    session = converse(server, f"<someone@{domain}>", ini, site=site)
    assert session.decision is None and session.verdict is not None
    assert (session.verdict.action, session.verdict.monitored) == (Action.TAG, held_back)
    assert session.verdict.auth  # the result is still recorded


# -- configuration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        pytest.param("on_fail = bounce", "t.ini: [spf] on_fail: expected", id="action"),
        pytest.param("on_temperror = defer", "t.ini: [spf] on_temperror: expected", id="temp"),
        pytest.param("check_helo = maybe", "t.ini: [spf] check_helo: expected", id="bool"),
        pytest.param("received_spf = 2", "t.ini: [spf] received_spf: expected", id="bool-2"),
        pytest.param("timeout = soon", "t.ini: [spf] timeout: expected", id="duration"),
        pytest.param(
            "trusted_forwarders = 192.0.2.300", "t.ini: [spf] trusted_forwarders: expected", id="ip"
        ),
        pytest.param(
            "on_failure = reject",
            "t.ini: [spf] on_failure: unknown option; did you mean 'on_fail'?",
            id="unknown-option",
        ),
    ],
)
def test_option_errors_name_file_section_and_option(ini: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load("t.ini", text=f"[spf]\n{ini}\n")


def test_option_error_quotes_the_bad_value() -> None:
    with pytest.raises(ConfigError) as error:
        config.load("t.ini", text="[spf]\non_fail = bounce\n")
    assert "'bounce'" in str(error.value)


def test_defaults() -> None:
    settings = config.load("t.ini", text="").checks["spf"]
    assert isinstance(settings, spf.SpfSettings)
    assert [getattr(settings, f"on_{result}") for result in spf.RESULTS] == [
        "continue",
        "continue",
        "continue",
        "reject",
        "tag",
        "tag",
        "tempfail",
    ]
    assert (settings.check_helo, settings.received_spf, settings.timeout) == (True, False, 10.0)


# -- hostile records: a result, in bounded time --------------------------------------------------

HOSTILE = f"timeout = {SPF_TIMEOUT:g}s\n"


@pytest.mark.parametrize(
    ("sender", "result"),
    [
        pytest.param("<someone@loop1.example>", "permerror", id="include-loop"),
        pytest.param("<someone@many.example>", "permerror", id="twenty-includes"),
        pytest.param("<someone@big-pass.example>", "pass", id="4kb-record-over-tcp-pass"),
        pytest.param("<someone@big-fail.example>", "fail", id="4kb-record-over-tcp-fail"),
        pytest.param("<someone@slow.timeout.test>", "temperror", id="domain-times-out"),
        pytest.param("<someone@swallowed.example>", "temperror", id="timeouts-pyspf-ignores"),
    ],
)
def test_hostile_record_gives_a_result_in_bounded_time(
    server: TestDnsServer, sender: str, result: str
) -> None:
    session = converse(server, sender, HOSTILE, helo="helo-fail.example", slow=0.001)
    verdict = session.verdict
    assert verdict is not None and verdict.outcome == f"spf.{result}"
    assert verdict.action is not Action.CONTINUE or result == "pass"
    assert session.elapsed < TIME_BOUND, f"{session.elapsed:.2f} s"


def test_twenty_includes_stop_at_the_lookup_limit(server: TestDnsServer) -> None:
    server.reset_queries()
    converse(server, "<someone@many.example>", HOSTILE, helo="")
    included = [q for q in server.queries if q.name.endswith(".many.example.")]
    assert len(included) <= 10  # RFC 7208 4.6.4


def test_4kb_record_is_fetched_again_over_tcp(server: TestDnsServer) -> None:
    assert len(big_record(True)) > 4000
    server.reset_queries()
    session = converse(server, "<someone@big-pass.example>", helo="")
    assert session.verdict is not None and session.verdict.outcome == "spf.pass"
    # The UDP answer was truncated (TC), so the same question came again over TCP.
    assert server.count("big-pass.example", "TXT") == 2


class SlowAnswers:
    """A DNS view whose every answer takes ``seconds`` on the check's clock, which it is."""

    def __init__(self, dns: ConnectionLookups, seconds: float) -> None:
        self._dns, self._seconds, self.now = dns, seconds, 0.0

    def __call__(self) -> float:
        return self.now

    def lookup(self, name: str, rdtype: str) -> object:
        """The real answer, ``seconds`` later; under timeout.test, "could not tell" one
        resolver timeout later, as the resolver would give it (without waiting for it)."""
        if name.rstrip(".").endswith("timeout.test"):
            self.now += RESOLVER_TIMEOUT
            return Unknown("timed out")
        self.now += self._seconds
        return self._dns.lookup(name, rdtype)

    def lookup_all(self, queries: object) -> dict:
        """The real answers, each as lookup gives it."""
        return {q: self.lookup(q.name, q.rdtype) for q in queries}  # type: ignore[attr-defined]


def test_slow_server_is_bounded(server: TestDnsServer) -> None:
    """Every answer takes 0.3 s, and the nine includes of chain.example need ten answers:
    the [spf] timeout of 2 s stops the walk, on the check's clock (no test sleeps for it)."""
    server.reset_queries()
    session = converse(server, "<someone@chain.example>", HOSTILE, helo="", slow=0.3)
    assert session.verdict is not None and session.verdict.outcome == "spf.temperror"
    assert len(server.queries) < 10  # the walk stopped at the bound
    assert session.elapsed < TIME_BOUND, f"{session.elapsed:.2f} s"


def test_chain_is_a_fail_when_answered_quickly(server: TestDnsServer) -> None:
    """The same record as above, answered at once: within the limits, and a plain fail."""
    session = converse(server, "<someone@chain.example>", HOSTILE, helo="")
    assert session.verdict is not None and session.verdict.outcome == "spf.fail"


def test_both_identities_share_the_time_bound(server: TestDnsServer) -> None:
    """Swallowed timeouts in the MAIL FROM and the HELO identity together stay in the bound."""
    session = converse(
        server, "<someone@swallowed.example>", HOSTILE, helo="helo-swallowed.example", slow=0.001
    )
    assert [r for r, _identity, _subject in spf_results(session.verdict)] == [
        "temperror",
        "temperror",
    ]
    assert session.elapsed < TIME_BOUND, f"{session.elapsed:.2f} s"


class BrokenDns:
    """A DNS view with a bug: every question raises."""

    def lookup(self, name: str, rdtype: str) -> object:
        """Fail."""
        raise RuntimeError("bug in the DNS view")

    def lookup_all(self, queries: object) -> dict:
        """Fail."""
        raise RuntimeError("bug in the DNS view")


def test_unexpected_error_inside_pyspf_is_temperror_not_a_crash() -> None:
    result, explanation = spf.evaluate(
        ipaddress.ip_address(CLIENT), "a@pass.example", "mx.pass.example", BrokenDns(), 1.0
    )
    assert (result, explanation) == ("temperror", "internal error")


def test_a_dns_failure_can_never_be_configured_into_a_5xx() -> None:
    with pytest.raises(ConfigError, match=r"\[spf\] on_temperror: expected one of continue, tag, "):
        config.load("t.ini", text="[spf]\non_temperror = reject\n")


def test_memo_reuses_a_result_for_a_minute_and_never_keeps_temperror() -> None:
    memo = spf.SpfMemo(size=2)
    settings = dataclasses.replace(spf.SpfSettings(), memo=memo)
    ip = ipaddress.ip_address("192.0.2.1")
    calls: list[str] = []

    def compute(result: str):
        return lambda: calls.append(result) or (result, "")

    remembered = spf._remembered
    assert remembered(settings, 100.0, ip, "a@x.example", "h", compute("pass")) == ("pass", "")
    assert remembered(settings, 159.0, ip, "a@x.example", "h", compute("fail")) == ("pass", "")
    assert remembered(settings, 160.0, ip, "a@x.example", "h", compute("fail")) == ("fail", "")
    assert calls == ["pass", "fail"]
    for _ in range(2):
        remembered(settings, 200.0, ip, "b@x.example", "h", compute("temperror"))
    assert calls == ["pass", "fail", "temperror", "temperror"]
    remembered(settings, 200.0, ip, "c@x.example", "h", compute("pass"))
    remembered(settings, 200.0, ip, "d@x.example", "h", compute("pass"))  # size 2: a@ goes
    remembered(settings, 200.0, ip, "a@x.example", "h", compute("none"))
    assert calls[-1] == "none"
