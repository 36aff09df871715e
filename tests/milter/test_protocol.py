"""The adapter over its real socket: negotiation, replies, header edits, robustness."""

from __future__ import annotations

from pathlib import Path

import pytest
from miltertest import constants as C

from tests.support.milterclient import MtaClient, reply_text
from tests.support.mxguard_proc import MxguardProcess

from .conftest import client_for, start_mxguard


def open_transaction(
    process: MxguardProcess,
    ip: str = "203.0.113.9",
    sender: str = "<sender@elsewhere.example>",
    **mail_macros: str,
):
    """Connect, HELO and MAIL FROM (as an outside client unless macros say otherwise)."""
    client = client_for(process)
    client.macros(C.SMFIC_CONNECT, j="mx.example.test", **{"{daemon_name}": "mx"})
    assert client.connect_step(ip) is None  # no connect check: no reply asked for
    assert client.helo("client.example") is None
    if mail_macros:
        client.macros(C.SMFIC_MAIL, **mail_macros)
    # The HELO and reverse-DNS checks decide at MAIL, so the MTA waits for that reply.
    assert client.mail(sender) == (C.SMFIR_CONTINUE, {})
    return client


def test_negotiation_asks_only_for_what_it_uses(mxguard: MxguardProcess) -> None:
    client = MtaClient.connect_to(*_address(mxguard))
    negotiated = client.negotiate()
    protocol = negotiated.protocol
    assert protocol & C.SMFIP_RCPT_REJ, "rejected recipients are needed to count probes"
    for skipped in (C.SMFIP_NOEOH, C.SMFIP_NODATA, C.SMFIP_NOUNKNOWN):
        assert protocol & skipped
    assert not protocol & C.SMFIP_NOBODY, "DKIM and ARC verification read the body"
    assert protocol & C.SMFIP_HDR_LEADSPC, "DKIM simple canonicalization needs exact headers"
    for no_reply in (C.SMFIP_NR_CONN, C.SMFIP_NR_HELO, C.SMFIP_NR_HDR, C.SMFIP_NR_BODY):
        assert protocol & no_reply, "no check decides at connect or HELO by default"
    assert not protocol & C.SMFIP_NR_MAIL, "HELO and reverse-DNS verdicts are given at MAIL"
    assert not protocol & C.SMFIP_NR_RCPT, "the relay check decides at RCPT"
    assert not protocol & C.SMFIP_NORCPT
    assert negotiated.macros[0] == [
        "j",
        "{daemon_name}",
        "{daemon_addr}",
        "{if_addr}",
        "{client_addr}",
    ]
    assert negotiated.macros[2] == ["i", "{auth_authen}", "{auth_type}"]
    assert "{rcpt_mailer}" in negotiated.macros[3]
    assert negotiated.macros[5] == ["i"]
    client.quit()


def _address(process: MxguardProcess) -> tuple[str, int]:
    port, host = process.socket.removeprefix("inet:").split("@")
    return host, int(port)


def test_relay_trick_refused_and_later_recipient_accepted(mxguard: MxguardProcess) -> None:
    client = open_transaction(mxguard)
    refused = client.rcpt("<alice%evil.example@example.test>")
    assert refused[0] == C.SMFIR_REPLYCODE
    assert refused[1]["smtpcode"] == "550"
    assert reply_text(refused).startswith("5.7.1 relay: percent hack not allowed")
    assert client.rcpt("<alice@example.test>") == (C.SMFIR_CONTINUE, {})
    foreign = client.rcpt("<bob@elsewhere.example>")
    assert foreign[1]["smtpcode"] == "550" and "relay access denied" in reply_text(foreign)
    malformed = client.rcpt("<bob..x@example.test>")
    assert malformed[1]["smtpcode"] == "501" and reply_text(malformed).startswith("5.1.3 ")
    assert client.end_of_message()[-1][0] == C.SMFIR_CONTINUE
    client.quit()
    log = mxguard.log_text()
    # Postfix style: the queue id (NOQUEUE before Postfix assigns one) first; the reason is
    # the reply as the client reads it (the MTA turns libmilter's %% back into %).
    assert (
        "NOQUEUE: stage=rcpt check=relay action=reject client=client.example[203.0.113.9] "
        "from=<sender@elsewhere.example> to=<alice%evil.example@example.test> "
        'reason="relay: percent hack not allowed: <alice%evil.example@example.test>"' in log
    )


def test_eom_replaces_forged_authentication_results(mxguard: MxguardProcess) -> None:
    client = open_transaction(mxguard)
    client.rcpt("<alice@example.test>")
    client.header("Authentication-Results", "other.example; spf=fail")
    client.header("Authentication-Results", "MX.example.test; spf=pass")
    client.header("Authentication-Results", "(comment) mx.example.test; dkim=pass")
    client.header("X-MXGuard", "mx.example.test; none")
    client.header("Subject", "hello")
    edits = client.end_of_message()
    assert edits[-1][0] == C.SMFIR_CONTINUE
    deleted = [(e[1]["name"], e[1]["index"]) for e in edits if e[0] == C.SMFIR_CHGHEADER]
    assert sorted(deleted) == [
        ("Authentication-Results", 2),
        ("Authentication-Results", 3),
        ("X-MXGuard", 1),
    ]
    assert all(e[1]["value"] == "" for e in edits if e[0] == C.SMFIR_CHGHEADER)
    added = {e[1]["name"]: e[1]["value"] for e in edits if e[0] == C.SMFIR_INSHEADER}
    # Values start with a space: the milter asked for leading space (SMFIP_HDR_LEADSPC).
    assert added["Authentication-Results"] == (
        ' mx.example.test; dkim=none; arc=none; dmarc=permerror reason="no From field"'
    )
    assert added["X-MXGuard"].startswith(" mx.example.test; ")
    client.quit()


def test_trusted_and_authenticated_clients_may_relay(mxguard: MxguardProcess) -> None:
    trusted = open_transaction(mxguard, ip="192.0.2.10")
    assert trusted.rcpt("<bob@elsewhere.example>") == (C.SMFIR_CONTINUE, {})
    trusted.quit()
    # A logged-in user sends as herself (the submission check binds senders to logins).
    authenticated = open_transaction(
        mxguard, sender="<carol@example.test>", **{"{auth_authen}": "carol", "{auth_type}": "PLAIN"}
    )
    assert authenticated.rcpt("<bob@elsewhere.example>") == (C.SMFIR_CONTINUE, {})
    authenticated.quit()


def test_transactions_are_independent(mxguard: MxguardProcess) -> None:
    client = open_transaction(mxguard, sender="<carol@example.test>", **{"{auth_authen}": "carol"})
    assert client.rcpt("<bob@elsewhere.example>") == (C.SMFIR_CONTINUE, {})
    client._send(C.SMFIC_ABORT)
    client.macros(C.SMFIC_MAIL, **{"{auth_authen}": ""})
    assert client.mail("<other@elsewhere.example>") == (C.SMFIR_CONTINUE, {})
    assert client.rcpt("<bob@elsewhere.example>")[1]["smtpcode"] == "550"
    client.quit()


def test_monitor_mode_tags_instead_of_refusing(tmp_path: Path) -> None:
    process = start_mxguard(tmp_path, {"milter": {"mode": "monitor"}})
    try:
        client = open_transaction(process)
        assert client.rcpt("<alice%evil.example@example.test>") == (C.SMFIR_CONTINUE, {})
        assert client.rcpt("<alice@example.test>") == (C.SMFIR_CONTINUE, {})
        edits = client.end_of_message()
        trace = next(e[1]["value"] for e in edits if e[1].get("name") == "X-MXGuard")
        assert "relay.percent-hack=would-reject" in trace
        client.quit()
        assert "action=would-reject" in process.log_text()
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("Subject", "caf\udcc3\udca9 \x00 nul", id="binary-and-nul"),
        pytest.param("X-Huge", "x" * 60000, id="huge"),
        pytest.param("Authentication-Results", "", id="empty-ar"),
        pytest.param("Authentication-Results", ";;;(((", id="garbage-ar"),
    ],
)
def test_odd_headers_never_break_the_connection(
    mxguard: MxguardProcess, name: str, value: str
) -> None:
    client = open_transaction(mxguard)
    client.rcpt("<alice@example.test>")
    client.header(name, value.encode("utf-8", "surrogateescape").decode("latin-1"))
    assert client.end_of_message()[-1][0] == C.SMFIR_CONTINUE
    client.quit()
    assert "Traceback" not in mxguard.log_text()


@pytest.mark.parametrize(
    "recipient",
    [
        "<\x00>",
        "<" + "a" * 5000 + "@example.test>",
        "<@>",
        '<"unclosed@example.test>',
        "<>",
        "alice@example.test",
    ],
)
def test_bad_recipients_get_a_clear_reply(mxguard: MxguardProcess, recipient: str) -> None:
    client = open_transaction(mxguard)
    reply = client.rcpt(recipient)
    if recipient == "alice@example.test":  # brackets are optional for us, like for Postfix
        assert reply == (C.SMFIR_CONTINUE, {})
    else:
        assert reply[1]["smtpcode"] in ("501", "550"), reply
    client.quit()
    assert "Traceback" not in mxguard.log_text()


@pytest.mark.parametrize("log_accepts", ["yes", "no"])
def test_accept_line_starts_with_the_queue_id_unless_turned_off(
    tmp_path: Path, log_accepts: str
) -> None:
    process = start_mxguard(tmp_path, {"log": {"log_accepts": log_accepts}})
    try:
        client = open_transaction(process)
        client.macros(C.SMFIC_RCPT, i="4XQID1")
        assert client.rcpt("<alice@example.test>") == (C.SMFIR_CONTINUE, {})
        client.header("From", "Sender <sender@elsewhere.example>")
        assert client.end_of_message()[-1][0] == C.SMFIR_CONTINUE
        client.quit()
        accepted = [line for line in process.log_text().splitlines() if "action=accept" in line]
        if log_accepts == "yes":
            assert len(accepted) == 1 and "mxguard.decision: 4XQID1: stage=eom" in accepted[0]
        else:
            assert accepted == []
    finally:
        process.stop()
