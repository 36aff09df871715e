"""Hostile messages over the real milter socket: each ends in a verdict, never a crash."""

from __future__ import annotations

import pytest
from miltertest import constants as C

from tests.support.mxguard_proc import MxguardProcess

from .test_protocol import open_transaction

DISPOSITIONS = (C.SMFIR_CONTINUE, C.SMFIR_ACCEPT, C.SMFIR_REPLYCODE, C.SMFIR_TEMPFAIL)
FROM = (b"From", b" Someone <someone@elsewhere.example>")


def finish(mxguard: MxguardProcess, fields: list[tuple[bytes, bytes]], body: bytes = b"") -> tuple:
    """One transaction with these raw header fields; the final disposition at end of message."""
    client = open_transaction(mxguard)
    assert client.rcpt("<alice@example.test>") == (C.SMFIR_CONTINUE, {})
    for name, value in fields:
        client.raw_header(name, value)
    if body:
        client.body(body)
    replies = client.end_of_message()
    client.quit()
    return replies[-1]


def assert_alive(mxguard: MxguardProcess) -> None:
    assert mxguard.alive(), "mxguard died"
    assert finish(mxguard, [FROM])[0] == C.SMFIR_CONTINUE
    assert "internal error" not in mxguard.log_text()


def test_a_thousand_received_fields_is_a_loop(mxguard: MxguardProcess) -> None:
    hop = b" from a.example ([192.0.2.1]) by b.example; Mon, 23 Nov 2026 10:00:00 +0000"
    final = finish(mxguard, [FROM] + [(b"Received", hop)] * 1000)
    assert final[0] == C.SMFIR_REPLYCODE
    assert final[1]["smtpcode"] == "554"
    assert final[1]["text"].startswith("5.4.6 received: too many hops (1000 > 50)")
    assert_alive(mxguard)


@pytest.mark.parametrize("size", [60_000, 1_000_000])
def test_huge_header_field_is_tagged(mxguard: MxguardProcess, size: int) -> None:
    # libmilter takes commands up to 1 MB here (server._raise_packet_limit); name and the
    # protocol's own bytes must fit as well.
    value = b" " + b"x" * (size - 100)
    final = finish(mxguard, [FROM, (b"X-Huge", value)])
    assert final[0] == C.SMFIR_CONTINUE
    assert "X-Huge too long" in mxguard.log_text()
    assert_alive(mxguard)


def test_invalid_utf8_and_control_bytes_are_tagged(mxguard: MxguardProcess) -> None:
    fields = [
        FROM,
        (b"Subject", b" caf\xe9 \xff\xfe \x01\x7f"),
        # (Not an 8-bit field *name*: Postfix and Sendmail take such a line for the start of
        # the body, and pymilter's C layer cannot decode one into the callback's str.)
        (b"X-Broken", b" \xc3\x28 broken sequence"),
        (b"DKIM-Signature", b" v=1; a=rsa-sha256; d=\xff; s=\x01x; b=!!; bh=\xfe"),
    ]
    # The milter protocol ends names and values at NUL, so a NUL can only arrive in the body.
    final = finish(mxguard, fields, body=b"\xff\xfe \x00 body \r\n")
    assert final[0] == C.SMFIR_CONTINUE
    log = mxguard.log_text()
    assert "8-bit characters in Subject without SMTPUTF8" in log
    assert_alive(mxguard)


@pytest.mark.parametrize(
    "signature",
    [
        b" garbage",
        b" v=1; a=rsa-sha256; d=elsewhere.example; s=sel; h=from; bh=AAAA; b=AAAA",
        b" v=1;;;;=;=;a=;b=;c=;d=;s=;h=;bh=",
        b" " + b"a=" * 20_000,
    ],
)
def test_garbage_dkim_signature_ends_in_a_verdict(mxguard: MxguardProcess, signature) -> None:
    final = finish(mxguard, [FROM, (b"DKIM-Signature", signature)], body=b"hello\r\n")
    assert final[0] == C.SMFIR_CONTINUE
    assert_alive(mxguard)
