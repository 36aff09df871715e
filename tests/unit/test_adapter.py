"""The adapter in-process, with a small fake libmilter context: bugs never escape, never 5xx."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterable, Iterator

import Milter
import pytest

from mxguard.core import config, metrics
from mxguard.core.check import Check
from mxguard.core.dns import DnsResult, Query, Unknown
from mxguard.core.facts import Stage
from mxguard.core.options import CheckSettings, Mode
from mxguard.core.pipeline import Pipeline
from mxguard.core.verdict import tag
from mxguard.daemon.adapter import MxguardMilter
from mxguard.daemon.runtime import RuntimeHolder, build_runtime
from tests.support.milterctx import FakeContext

ALL_PROTOCOL = 0x1FFFFF


def broken_check(stage: Stage) -> Check:
    def explode(facts, settings, services):
        raise ZeroDivisionError("bug in a check")

    return Check(name="broken", summary="", settings=CheckSettings, stages={stage: explode})


def milter_with(pipeline_checks, macros=None) -> tuple[MxguardMilter, FakeContext]:
    settings = config.load(
        "t.ini", text="[milter]\nlocal_domains = example.test\n[dns]\nnameservers = 127.0.0.1:9\n"
    )
    runtime = build_runtime(settings)
    runtime = dataclasses.replace(runtime, pipeline=Pipeline(pipeline_checks))
    milter = MxguardMilter(RuntimeHolder(runtime))
    ctx = FakeContext(macros)
    milter._setctx(ctx)
    opts = [Milter.CURR_ACTS, ALL_PROTOCOL, 0, 0]
    assert milter.negotiate(opts) == Milter.CONTINUE
    return milter, ctx


def converse(milter: MxguardMilter) -> list[int]:
    return [
        milter.connect("client.example", socket.AF_INET, ("203.0.113.9", 4000)),
        milter.hello("client.example"),
        milter.envfrom("<a@sender.example>"),
        milter.envrcpt("<alice@example.test>"),
        milter.eom(),
    ]


def test_exception_in_a_check_gives_451_430() -> None:
    milter, ctx = milter_with([(broken_check(Stage.RCPT), CheckSettings(mode=Mode.ENFORCE))])
    codes = converse(milter)
    assert codes[3] == Milter.TEMPFAIL
    assert ctx.replies == [("451", "4.3.0", "internal error, try again later")]


def test_exception_where_no_reply_is_expected_tempfails_the_next_step(monkeypatch) -> None:
    milter, ctx = milter_with([(broken_check(Stage.EOM), CheckSettings(mode=Mode.ENFORCE))])
    monkeypatch.setattr(milter.runtime.__class__, "is_trusted", lambda self, ip: 1 / 0)
    codes = converse(milter)
    assert codes[0] == Milter.NOREPLY  # connect: the MTA reads no reply there
    assert codes[3] == Milter.NOREPLY  # no check acts at RCPT
    assert codes[4] == Milter.TEMPFAIL
    assert ctx.replies[-1][:2] == ("451", "4.3.0")


def test_exception_in_a_monitored_check_lets_mail_through() -> None:
    milter, ctx = milter_with([(broken_check(Stage.RCPT), CheckSettings(mode=Mode.MONITOR))])
    codes = converse(milter)
    assert codes[3] == Milter.CONTINUE and codes[4] == Milter.CONTINUE
    trace = next(e[2] for e in ctx.edits if e[:2] == ("add", "X-MXGuard"))
    assert "broken.internal-error=would-tempfail" in trace


@pytest.mark.parametrize(
    ("hostaddr", "macros", "expected"),
    [
        pytest.param(("203.0.113.9", 25), {}, "203.0.113.9", id="ipv4"),
        pytest.param(("::ffff:203.0.113.9", 25, 0, 0), {}, "203.0.113.9", id="v4-mapped"),
        pytest.param(("2001:db8::1", 25, 0, 0), {}, "2001:db8::1", id="ipv6"),
        pytest.param(None, {"{client_addr}": "198.51.100.1"}, "198.51.100.1", id="macro"),
        pytest.param("/run/socket", {}, "unknown", id="unix"),
    ],
)
def test_client_address_from_callback_or_macro(hostaddr, macros, expected) -> None:
    milter, _ = milter_with([], macros)
    milter.connect("client", socket.AF_INET, hostaddr)
    assert milter.connection.client_text == expected


def test_macros_become_facts() -> None:
    milter, _ = milter_with(
        [],
        {
            "{daemon_name}": "submission",
            "j": "mx.example.test",
            "{if_addr}": "192.0.2.25",
            "{auth_authen}": "carol@example.test",
            "{auth_type}": "PLAIN",
            "i": "ABC123",
        },
    )
    converse(milter)
    facts = milter.connection
    assert facts.submission and facts.daemon_name == "submission"
    assert facts.mta_name == "mx.example.test" and str(facts.interface_ip) == "192.0.2.25"
    assert facts.authenticated and facts.auth_user == "carol@example.test"
    assert facts.auth_type == "PLAIN"


def body_reader(seen: list) -> Check:
    def record(facts, settings, services):
        seen.append(facts.message)
        return None

    return Check(
        name="reader",
        summary="",
        settings=CheckSettings,
        stages={Stage.EOM: record},
        reads_body=True,
    )


def test_body_asked_for_only_when_a_check_reads_it() -> None:
    without, _ = milter_with([])
    assert without._protocol & Milter.P_NOBODY
    with_reader, _ = milter_with([(body_reader([]), CheckSettings())])
    assert not with_reader._protocol & Milter.P_NOBODY
    assert with_reader._protocol & Milter.P_NR_BODY
    assert with_reader._protocol & Milter.P_HDR_LEADSPC


def test_raw_headers_and_body_reach_the_checks_and_added_fields_get_their_space() -> None:
    seen: list = []
    milter, ctx = milter_with([(body_reader(seen), CheckSettings())])
    milter.connect("client.example", socket.AF_INET, ("203.0.113.9", 4000))
    milter.hello("client.example")
    milter.envfrom("<a@sender.example>")
    milter.envrcpt("<alice@example.test>")
    milter.header("Subject", b"  two spaces\n\tand a fold")
    milter.header("X-Bytes", b" caf\xe9 \x00 end")
    milter.body(b"line one\r\n")
    milter.body(b"line two\r\n")
    assert milter.eom() == Milter.CONTINUE
    message = seen[0]
    assert message.raw_headers[0] == (b"Subject", b"  two spaces\n\tand a fold")
    assert message.headers[1] == ("X-Bytes", "caf\ufffd \x00 end")
    assert message.body == b"line one\r\nline two\r\n" and message.body_size == 20
    assert message.as_bytes().startswith(b"Subject:  two spaces\r\n\tand a fold\r\nX-Bytes: caf")
    added = [edit for edit in ctx.edits if edit[0] == "add"]
    assert added and all(value.startswith(" ") for _, _, value, _ in added)


def quarantining(stage: Stage = Stage.EOM) -> Check:
    def hold(facts, settings, services):
        return dataclasses.replace(
            tag("dmarc", "quarantine", "policy is quarantine"), quarantine="dmarc: held"
        )

    return Check(name="dmarc", summary="", settings=CheckSettings, stages={stage: hold})


def test_quarantine_verdict_holds_the_message_unless_monitored() -> None:
    milter, ctx = milter_with([(quarantining(), CheckSettings())])
    assert converse(milter)[-1] == Milter.CONTINUE
    assert ("quarantine", "dmarc: held") in ctx.edits
    monitored = CheckSettings(mode=Mode.MONITOR)
    milter, ctx = milter_with([(quarantining(), monitored)])
    assert converse(milter)[-1] == Milter.CONTINUE
    assert not [edit for edit in ctx.edits if edit[0] == "quarantine"]


# -- the decision log ---------------------------------------------------------------------------


class DecisionLines(logging.Handler):
    """The lines the adapter logs to mxguard.decision, with their levels."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage()))

    def info(self) -> list[str]:
        """The lines an admin sees at the default level."""
        return [line for level, line in self.records if level >= logging.INFO]

    def debug(self) -> list[str]:
        """The lines seen only with [log] level = debug."""
        return [line for level, line in self.records if level < logging.INFO]


@pytest.fixture
def decisions() -> Iterator[DecisionLines]:
    """Collect the decision lines directly (logsetup may have cut mxguard off from the root)."""
    logger = logging.getLogger("mxguard.decision")
    handler, level = DecisionLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def tagging(*stages: Stage) -> Check:
    """A check that tags at each of ``stages``, so every stage logs a line."""

    def seen(facts, settings, services):
        return tag("tagger", "seen", f"seen at {facts.stage}")

    return Check(
        name="tagger", summary="", settings=CheckSettings, stages=dict.fromkeys(stages, seen)
    )


def real_checks(*names: str) -> list:
    """The shipped checks (all, or those named) with their default settings."""
    settings = config.load(
        "t.ini", text="[milter]\nlocal_domains = example.test\nhostnames = mx.example.test\n"
    )
    return [(c, s) for c, s in settings.ordered_checks() if not names or c.name in names]


@pytest.mark.parametrize(
    ("hostname", "shown"),
    [
        pytest.param("[203.0.113.9]", "unknown[203.0.113.9]", id="no-name-postfix-brackets"),
        pytest.param("", "unknown[203.0.113.9]", id="no-name-at-all"),
        pytest.param("mail.example.net", "mail.example.net[203.0.113.9]", id="named"),
    ],
)
def test_client_is_logged_as_postfix_logs_it(
    hostname: str, shown: str, decisions: DecisionLines
) -> None:
    milter, _ = milter_with([(tagging(Stage.CONNECT), CheckSettings(mode=Mode.ENFORCE))])
    milter.connect(hostname, socket.AF_INET, ("203.0.113.9", 4000))
    assert f" client={shown} " in decisions.info()[0]


def test_from_and_to_only_once_there_is_a_sender_and_a_recipient(
    decisions: DecisionLines,
) -> None:
    stages = (Stage.CONNECT, Stage.MAIL, Stage.RCPT, Stage.EOM)
    milter, _ = milter_with([(tagging(*stages), CheckSettings(mode=Mode.ENFORCE))])
    converse(milter)
    connect, mail, rcpt, eom, accept = decisions.info()
    assert " from=" not in connect and " to=" not in connect
    assert "client=client.example[203.0.113.9] reason=" in connect
    assert " from=<a@sender.example> reason=" in mail
    assert " from=<a@sender.example> to=<alice@example.test> reason=" in rcpt
    assert " to=<alice@example.test> reason=" in eom and " to=<alice@example.test> " in accept


def test_reason_is_the_reply_text_as_the_client_reads_it(decisions: DecisionLines) -> None:
    milter, ctx = milter_with(real_checks("relay"))
    milter.connect("[203.0.113.9]", socket.AF_INET, ("203.0.113.9", 4000))
    milter.hello("client.example")
    milter.envfrom("<a@sender.example>")
    assert milter.envrcpt('<"user@other.example"@example.test>') == Milter.REJECT
    assert milter.envrcpt("<50%off@example.test>") == Milter.REJECT
    # The MTA turns libmilter's %% back into %, so the client reads one.
    sent = [text.replace("%%", "%") for _code, _dsn, text in ctx.replies]
    logged = [line.split(' reason="', 1)[1].removesuffix('"') for line in decisions.info()]
    assert logged == sent
    assert logged[0] == (
        'relay: quoted local part hiding a route not allowed: <"user@other.example"@example.test>'
    )
    assert logged[1] == "relay: percent hack not allowed: <50%off@example.test>"


class OutageDns:
    """Every question times out, as when the resolver is down."""

    def lookup(self, name: str, rdtype: str) -> DnsResult:
        return Unknown("timeout")

    def lookup_all(self, queries: Iterable[Query]) -> dict[Query, DnsResult]:
        return {query: Unknown("timeout") for query in queries}


def counted(stage: str, check: str, action: str) -> float:
    """How many verdicts the metrics have counted for (stage, check, action)."""
    labels = {"stage": stage, "check": check, "action": action}
    return metrics.REGISTRY.get_sample_value("mxguard_verdicts_total", labels) or 0.0


def test_a_dns_outage_gives_one_line_for_one_refusal(decisions: DecisionLines) -> None:
    """SPF, the sender domain and the reverse DNS all fail at MAIL: one 451, one line."""
    milter, ctx = milter_with(real_checks())
    milter.services = dataclasses.replace(milter.services, dns=OutageDns())
    before = [counted("mail", *key) for key in (("spf", "tempfail"), ("sender", "tempfail"))]
    milter.connect("[203.0.113.9]", socket.AF_INET, ("203.0.113.9", 4000))
    milter.hello("client.example")
    assert milter.envfrom("<a@sender.example>") == Milter.TEMPFAIL
    (reply,) = ctx.replies
    (line,) = decisions.info()
    assert "stage=mail check=spf action=tempfail client=unknown[203.0.113.9]" in line
    assert line.endswith(f' reason="{reply[2]}"')
    # What else failed is there at debug level, and every verdict is still counted.
    assert any("check=sender action=tempfail" in debug for debug in decisions.debug())
    assert any("check=rdns action=tag" in debug for debug in decisions.debug())
    after = [counted("mail", *key) for key in (("spf", "tempfail"), ("sender", "tempfail"))]
    assert after == [count + 1 for count in before]
