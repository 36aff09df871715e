"""The headers check: missing and duplicated fields, raw 8-bit, control characters, long fields."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.checks import headers as headers_check
from mxguard.checks.headers import HeadersSettings
from mxguard.core.errors import ValueParseError
from mxguard.core.facts import Connection, Envelope, Facts, Message, Stage
from mxguard.core.options import Mode, specs
from mxguard.core.pipeline import Pipeline
from mxguard.core.verdict import Action, Verdict
from mxguard.mail.address import parse_path
from tests.unit import fakes

CLIENT = ipaddress.ip_address("192.0.2.7")
SERVICES = fakes.services()

# A well-formed header: one of each field RFC 5322 allows once, plus repeatable ones.
GOOD: list[tuple[str, str]] = [
    ("Received", "from a.example by mx.example.org; Mon, 1 Jan 2024 10:00:00 +0000"),
    ("Received", "from b.example by a.example; Mon, 1 Jan 2024 09:59:59 +0000"),
    ("Date", "Mon, 1 Jan 2024 09:59:58 +0000"),
    ("From", "Alice <alice@example.net>"),
    ("Sender", "list-bounces@example.net"),
    ("Reply-To", "list@example.net"),
    ("To", "bob@example.org"),
    ("Cc", "carol@example.org"),
    ("Message-ID", "<1@example.net>"),
    ("In-Reply-To", "<0@example.org>"),
    ("References", "<0@example.org>"),
    ("Subject", "hello"),
    ("Comments", "one"),
    ("Comments", "two"),
    ("Keywords", "a, b"),
    ("Resent-From", "dave@example.net"),
    ("Resent-From", "erin@example.net"),
]


def good(*extra: tuple[str, str], without: str = "") -> list[tuple[str, str]]:
    """GOOD minus the fields called ``without``, plus ``extra``."""
    return [f for f in GOOD if f[0].lower() != without.lower()] + list(extra)


def raw_good(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """GOOD as the MTA sends it (leading space kept), plus raw ``extra`` fields."""
    return [(n.encode(), b" " + v.encode()) for n, v in GOOD] + list(extra)


def run(
    message: Message | None,
    config: HeadersSettings | None = None,
    esmtp: tuple[str, ...] = (),
    envelope: bool = True,
    **connection: object,
) -> Verdict | None:
    """The check's verdict on ``message`` from an outside client (or as ``connection`` says)."""
    env = (
        Envelope("<alice@example.net>", parse_path("<alice@example.net>"), esmtp)
        if envelope
        else None
    )
    facts = Facts(Stage.EOM, Connection(client_ip=CLIENT, **connection), env, message=message)
    return headers_check.check_eom(facts, config or HeadersSettings(), SERVICES)


def reason(message: Message, **kwargs: object) -> str:
    """The reason of the tag the check gives ``message``; fails when it gives none."""
    verdict = run(message, **kwargs)
    assert verdict is not None, "expected a finding"
    assert verdict.action is Action.TAG
    assert verdict.outcome == "headers.malformed"
    return verdict.reason


# --- a clean header --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "esmtp"),
    [
        pytest.param(Message.from_text(GOOD), (), id="plain"),
        pytest.param(Message.from_raw(raw_good()), (), id="raw-with-leading-space"),
        pytest.param(Message.from_text([("FROM", "a@example.net")]), (), id="only-from-any-case"),
        pytest.param(Message.from_text([("From ", "a@example.net")]), (), id="space-before-colon"),
        pytest.param(
            Message.from_text(good(("Subject", "caf\u00e9"), without="Subject")),
            ("SMTPUTF8",),
            id="utf8-with-smtputf8",
        ),
        pytest.param(
            Message.from_raw(raw_good((b"X-Folded", b" a\n\tb\r\n c\td"))),
            (),
            id="tab-cr-lf",
        ),
    ],
)
def test_a_sound_header_says_nothing(message: Message, esmtp: tuple[str, ...]) -> None:
    assert run(message, esmtp=esmtp) is None


def test_a_long_but_legal_references_field_is_fine() -> None:
    references = " ".join(f"<{i}@example.org>" for i in range(1500))  # ~25 KB, one field
    message = Message.from_text(good(("References", references), without="References"))
    assert len(references) > 20_000
    assert run(message) is None


def test_no_message_says_nothing() -> None:
    assert run(None) is None


# --- missing From ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(good(without="From"), id="no-from"),
        pytest.param([], id="empty-header"),
        pytest.param([("Resent-From", "a@example.net")], id="resent-from-is-not-from"),
        pytest.param([("X-From", "a@example.net")], id="x-from-is-not-from"),
    ],
)
def test_missing_from_is_a_finding(headers: list[tuple[str, str]]) -> None:
    assert reason(Message.from_text(headers)) == "no From field"


# --- duplicated fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Date",
        "From",
        "Sender",
        "Reply-To",
        "To",
        "Cc",
        "Bcc",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Subject",
    ],
)
def test_a_field_allowed_once_may_not_repeat(name: str) -> None:
    message = Message.from_text(good((name.upper(), "x"), (name.lower(), "y")))
    expected = 2 if name == "Bcc" else 3  # GOOD carries every one of them but Bcc
    assert reason(message) == f"{expected} {name} fields"


@pytest.mark.parametrize("name", ["Received", "Comments", "Keywords", "Resent-From", "X-Spam"])
def test_repeatable_fields_may_repeat(name: str) -> None:
    assert run(Message.from_text(good((name, "1"), (name, "2"), (name, "3")))) is None


# --- raw 8-bit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "shown"),
    [
        pytest.param((b"X-Note", b" caf\xc3\xa9"), "X-Note", id="utf8-value"),
        pytest.param((b"X-Note", b" caf\xe9"), "X-Note", id="latin1-value"),
        pytest.param((b"X-Caf\xc3\xa9", b" 1"), "X-Caf??", id="8bit-name"),
    ],
)
@pytest.mark.parametrize(
    "esmtp",
    [
        pytest.param((), id="no-params"),
        pytest.param(("BODY=8BITMIME",), id="8bitmime-covers-only-the-body"),
        pytest.param(("SIZE=1000", "SMTPUTF8X"), id="lookalike-param"),
    ],
)
def test_8bit_without_smtputf8_is_a_finding(
    field: tuple[bytes, bytes], shown: str, esmtp: tuple[str, ...]
) -> None:
    message = Message.from_raw(raw_good(field))
    assert reason(message, esmtp=esmtp) == f"8-bit characters in {shown} without SMTPUTF8"


def test_8bit_without_an_envelope_is_a_finding() -> None:
    message = Message.from_raw(raw_good((b"Subject2", b" caf\xc3\xa9")))
    assert "8-bit characters in Subject2" in reason(message, envelope=False)


@pytest.mark.parametrize(
    "esmtp",
    [
        pytest.param(("SMTPUTF8",), id="upper"),
        pytest.param(("smtputf8",), id="lower"),
        pytest.param(("BODY=8BITMIME", "SmtpUtf8"), id="with-body"),
    ],
)
@pytest.mark.parametrize(
    "field",
    [
        pytest.param((b"Subject2", b" caf\xc3\xa9"), id="utf8-value"),
        pytest.param((b"Subject2", b" \xff\xfe not utf-8"), id="invalid-utf8-value"),
        pytest.param((b"X-Caf\xc3\xa9", b" 1"), id="8bit-name"),
    ],
)
def test_smtputf8_permits_8bit(esmtp: tuple[str, ...], field: tuple[bytes, bytes]) -> None:
    assert run(Message.from_raw(raw_good(field)), esmtp=esmtp) is None


def test_has_smtputf8() -> None:
    assert headers_check.has_smtputf8(
        Envelope("<>", parse_path("<>", allow_null=True), ("SMTPUTF8",))
    )
    assert not headers_check.has_smtputf8(Envelope("<>", parse_path("<>", allow_null=True), ()))
    assert not headers_check.has_smtputf8(None)


# --- control characters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b" a\x00b", id="nul"),
        pytest.param(b" \x01", id="soh"),
        pytest.param(b" \x1b[31mred", id="escape"),
        pytest.param(b" a\x0bb", id="vertical-tab"),
        pytest.param(b" a\x0cb", id="form-feed"),
        pytest.param(b" a\x7f", id="del"),
        pytest.param(b"\x00", id="only-nul"),
    ],
)
def test_control_characters_in_a_value_are_a_finding(value: bytes) -> None:
    message = Message.from_raw(raw_good((b"X-Note", value)))
    assert reason(message) == "control characters in X-Note"


def test_control_characters_in_a_name_are_a_finding() -> None:
    message = Message.from_raw(raw_good((b"X-\x00Note", b" 1")))
    assert reason(message) == "control characters in X-?Note"


def test_nul_is_flagged_with_smtputf8_too() -> None:
    message = Message.from_raw(raw_good((b"X-Note", b" caf\xc3\xa9\x00")))
    assert reason(message, esmtp=("SMTPUTF8",)) == "control characters in X-Note"


# --- field length ------------------------------------------------------------------------------


def test_a_one_megabyte_field_is_a_finding() -> None:
    value = b" " + b"a" * (1 << 20)
    message = Message.from_raw(raw_good((b"X-Big", value)))
    size = len(b"X-Big") + len(value)
    assert reason(message) == f"X-Big too long ({size} octets, max 32768)"


def test_the_limit_counts_name_and_value_octets() -> None:
    limited = HeadersSettings(max_header_length=100)
    at_limit = Message.from_raw(raw_good((b"X-Pad", b" " + b"a" * 94)))  # 5 + 95 = 100
    over = Message.from_raw(raw_good((b"X-Pad", b" " + b"a" * 95)))
    assert run(at_limit, limited) is None
    assert run(over, limited).reason == "X-Pad too long (101 octets, max 100)"


def test_a_multibyte_value_is_measured_in_octets() -> None:
    limited = HeadersSettings(max_header_length=100)
    value = " " + "\u00e9" * 50  # 50 characters, 101 octets
    message = Message.from_raw(raw_good((b"X-Pad", value.encode())))
    assert run(message, limited, esmtp=("SMTPUTF8",)).reason == (
        "X-Pad too long (106 octets, max 100)"
    )


def test_a_zero_limit_disables_the_length_rule() -> None:
    message = Message.from_raw(raw_good((b"X-Big", b" " + b"a" * (1 << 20))))
    assert run(message, HeadersSettings(max_header_length=0)) is None


# --- invalid UTF-8 and arbitrary bytes ---------------------------------------------------------


def test_invalid_utf8_is_judged_as_bytes() -> None:
    message = Message.from_raw([(b"Fr\xffom", b" \xff\xfe\x00"), (b"Subject", b" \xc3(")])
    assert reason(message) == (
        "no From field; 8-bit characters in Fr?om without SMTPUTF8; "
        "control characters in Fr?om; 8-bit characters in Subject without SMTPUTF8"
    )


def test_a_message_without_a_raw_view_is_judged_from_its_text() -> None:
    # A Message built from text only (an older adapter) must not look as if it had no fields.
    assert run(Message(headers=tuple(GOOD))) is None
    lone_surrogate = Message(headers=(("From", "a@example.net"), ("Subject", "\udcff\x00")))
    assert run(lone_surrogate).reason == (
        "8-bit characters in Subject without SMTPUTF8; control characters in Subject"
    )


fields = st.lists(st.tuples(st.binary(max_size=60), st.binary(max_size=200)), max_size=30)
params = st.lists(st.sampled_from(["SMTPUTF8", "smtputf8", "BODY=8BITMIME", "SIZE=1", ""]))


@settings(max_examples=300, deadline=None)
@given(
    raw=fields,
    esmtp=params,
    action=st.sampled_from(["tag", "reject"]),
    limit=st.integers(0, 300),
)
def test_arbitrary_bytes_never_raise(
    raw: list[tuple[bytes, bytes]], esmtp: list[str], action: str, limit: int
) -> None:
    config = HeadersSettings(action=action, max_header_length=limit)
    verdict = run(Message.from_raw(raw), config, esmtp=tuple(esmtp))
    has_from = any(name.strip(b" \t").lower() == b"from" for name, _ in raw)
    if not has_from:
        assert verdict is not None and verdict.reason.startswith("no From field")
    if verdict is not None:
        assert verdict.outcome == "headers.malformed"
        assert verdict.reason.isascii() and verdict.reason.isprintable()
        assert verdict.action is (Action.REJECT if action == "reject" else Action.TAG)


# --- several findings in one verdict -----------------------------------------------------------


def test_every_finding_is_listed_in_one_verdict() -> None:
    raw = [
        (b"Subject", b" a"),
        (b"Subject", b" b\x00"),
        (b"Date", b" Mon, 1 Jan 2024 00:00:00 +0000"),
        (b"date", b" Tue, 2 Jan 2024 00:00:00 +0000"),
        (b"X-Latin", b" caf\xe9"),
    ]
    assert reason(Message.from_raw(raw)) == (
        "no From field; 2 Date fields; 2 Subject fields; control characters in Subject; "
        "8-bit characters in X-Latin without SMTPUTF8"
    )


def test_a_field_is_named_once_per_kind() -> None:
    raw = raw_good(*[(b"X-Note", b" \x00")] * 5, (b"x-note", b" \x01"))
    assert reason(Message.from_raw(raw)) == "control characters in X-Note"


def test_many_findings_give_a_short_reply() -> None:
    name = b"X-" + b"N" * 200
    raw = [(name + bytes([65 + i]), b" \xff\x00" + b"a" * 40_000) for i in range(20)]
    verdict = run(Message.from_raw(raw), HeadersSettings(action="reject"))
    assert verdict.reason.startswith("no From field; 8-bit characters in X-NNN")
    assert verdict.reason.endswith("; and 56 more")  # 1 + 20 * 3 findings, 5 listed
    assert len(f"550 5.7.1 {verdict.text}") < 512


# --- reject mode, exemptions, off, monitor -----------------------------------------------------


def test_reject_mode_refuses_with_550() -> None:
    verdict = run(Message.from_text(good(without="From")), HeadersSettings(action="reject"))
    assert verdict.action is Action.REJECT and verdict.refuses
    assert (verdict.reply.smtp_code, verdict.reply.dsn_code) == ("550", "5.7.1")
    assert verdict.text == "headers: no From field"
    assert verdict.outcome == "headers.malformed"


def test_tag_mode_does_not_refuse() -> None:
    verdict = run(Message.from_text(good(without="From")))
    assert verdict.action is Action.TAG and not verdict.refuses and verdict.reply is None


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param({"trusted": True}, id="trusted"),
        pytest.param({"auth_user": "carol@example.org"}, id="authenticated"),
    ],
)
def test_our_own_clients_are_skipped_in_reject_mode_only(connection: dict) -> None:
    message = Message.from_text(good(without="From"))
    assert run(message, HeadersSettings(action="reject"), **connection) is None
    assert run(message, HeadersSettings(action="tag"), **connection).action is Action.TAG


def test_an_outside_client_is_not_exempt_in_reject_mode() -> None:
    message = Message.from_text(good(without="From"))
    assert run(message, HeadersSettings(action="reject")).action is Action.REJECT


def test_off_says_nothing() -> None:
    message = Message.from_raw([(b"Subject", b" \x00\xff"), (b"Subject", b" x")])
    assert run(message, HeadersSettings(action="off")) is None


def test_monitor_mode_tags_what_it_would_refuse() -> None:
    config = HeadersSettings(action="reject", mode=Mode.MONITOR)
    pipeline = Pipeline([(headers_check.CHECK, config)])
    conn = Connection(client_ip=CLIENT)
    facts = Facts(Stage.EOM, conn, message=Message.from_text(good(without="From")))
    result = pipeline.run(Stage.EOM, facts, SERVICES)
    assert result.decision is None
    (verdict,) = result.verdicts
    assert verdict.action is Action.TAG and verdict.monitored is Action.REJECT


def test_a_pipeline_refuses_in_reject_mode() -> None:
    pipeline = Pipeline([(headers_check.CHECK, HeadersSettings(action="reject"))])
    facts = Facts(
        Stage.EOM, Connection(client_ip=CLIENT), message=Message.from_text(good(without="Date"))
    )
    assert pipeline.run(Stage.EOM, facts, SERVICES).decision is None  # Date is not required
    facts = dataclasses.replace(facts, message=Message.from_text(good(("To", "x@example.org"))))
    assert pipeline.run(Stage.EOM, facts, SERVICES).decision.text == "headers: 2 To fields"


# --- declaration -------------------------------------------------------------------------------


def test_declaration_and_defaults() -> None:
    check = headers_check.CHECK
    assert check.name == "headers" and set(check.stages) == {Stage.EOM}
    assert check.settings is HeadersSettings and not check.reads_body
    defaults = {spec.name: spec.kind.parse(spec.default_text) for spec in specs(HeadersSettings)}
    assert defaults["action"] == "tag" and defaults["max_header_length"] == 32768
    assert HeadersSettings().action == "tag"


def test_action_accepts_only_its_choices() -> None:
    kind = next(s.kind for s in specs(HeadersSettings) if s.name == "action")
    assert kind.parse(" Reject ") == "reject"
    with pytest.raises(ValueParseError):
        kind.parse("quarantine")


def test_shown_name() -> None:
    assert headers_check.shown_name(b"") == "(unnamed)"
    assert headers_check.shown_name(b"A b\xff") == "A?b?"
    assert headers_check.shown_name(b"x" * 50) == "x" * 40 + "..."
