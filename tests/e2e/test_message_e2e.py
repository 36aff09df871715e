"""End-of-message checks behind the real Postfix: DKIM, DMARC, forged Received, our From.

A refusal here is the reply to the final dot: the sending server keeps the message and tells
its own user; nobody bounces to a forged sender.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

import dkim
import pytest

from tests.support.dnsserver import TestDnsServer
from tests.support.mxguard_proc import MxguardProcess
from tests.support.postfix import PostfixInstance

from .test_postfix_e2e import HELO, by_message_id, make_message

pytestmark = pytest.mark.usefixtures("requires_mxguard")

KEY = (Path(__file__).resolve().parent.parent / "data" / "dkim" / "test.private").read_bytes()


def submit(mta: PostfixInstance, sender: str, data: bytes) -> tuple[int, str]:
    """One transaction from the outside client 127.0.0.1; the reply to the final dot."""
    with smtplib.SMTP(*mta.address, local_hostname=HELO, timeout=60) as client:
        assert client.ehlo()[0] == 250
        assert client.mail(sender)[0] == 250
        assert client.rcpt("alice@example.test")[0] == 250
        try:
            code, text = client.data(data)
        except smtplib.SMTPDataError as refused:
            return refused.smtp_code, refused.smtp_error.decode()
    return code, text.decode()


def message_from(author: str, subject: str, extra: list[str] | None = None) -> tuple[str, bytes]:
    msgid, data = make_message(subject, extra=extra)
    return msgid, data.replace(
        b"From: Someone <someone@sender.example>", f"From: {author}".encode()
    )


def test_dkim_signed_message_passes_dkim_and_dmarc(mta: PostfixInstance) -> None:
    msgid, data = message_from("News <news@signed.example>", "signed")
    signature = dkim.sign(data, b"e2e", b"signed.example", KEY, canonicalize=(b"simple", b"simple"))
    # The envelope sender is not aligned (and signed.example's SPF is -all): DMARC passes
    # through the DKIM signature alone.
    assert submit(mta, "someone@sender.example", signature + data)[0] == 250
    (message,) = by_message_id(mta.wait_for_delivery("alice", 1), msgid)
    results = " ".join(message["Authentication-Results"].split())
    assert "dkim=pass header.d=signed.example header.s=e2e header.b=" in results, results
    assert "dmarc=pass header.from=signed.example" in results, results


def test_dmarc_reject_failure_is_refused_at_end_of_data(mta: PostfixInstance) -> None:
    _, data = message_from("Boss <boss@strict.example>", "dmarc")
    code, text = submit(mta, "someone@sender.example", data)
    assert code == 550, text
    assert text.startswith("5.7.1 dmarc: strict.example policy is reject"), text


def test_altered_signed_message_fails_dmarc_and_is_refused(mta: PostfixInstance) -> None:
    _, data = message_from("News <news@signed.example>", "altered")
    signature = dkim.sign(data, b"e2e", b"signed.example", KEY)
    code, text = submit(mta, "someone@sender.example", signature + data.replace(b"test", b"TEST"))
    assert code == 550, text
    assert "dmarc: signed.example policy is reject" in text and "DKIM fail" in text, text


def test_forged_received_chain_is_refused(mta: PostfixInstance) -> None:
    forged = "from mx.example.test (mx.example.test [192.0.2.10]) by mx.example.test; " + (
        "Mon, 23 Nov 2026 10:00:00 +0000"
    )
    _, data = message_from("Someone <someone@sender.example>", "forged", [f"Received: {forged}"])
    code, text = submit(mta, "someone@sender.example", data)
    assert code == 550, text
    assert text.startswith("5.7.1 received: hop 1 claims to be received by our host"), text


def test_our_domain_in_from_from_outside_is_refused(mta: PostfixInstance) -> None:
    _, data = message_from("CEO <ceo@example.test>", "spoof")
    code, text = submit(mta, "someone@sender.example", data)
    assert code == 550, text
    assert text.startswith("5.7.1 spoof: From: ceo@example.test uses our domain example.test"), text


def test_megabyte_header_and_nul_bytes_end_in_a_verdict(
    mta: PostfixInstance, mxguard: MxguardProcess
) -> None:
    # Postfix keeps header_size_limit (100 KB) of the field and hands that to the milter in one
    # command, which libmilter's default 64 KB limit would refuse (server._raise_packet_limit).
    msgid, data = message_from("Someone <someone@sender.example>", "huge", ["X-Huge: y"])
    data = data.replace(b"X-Huge: y", b"X-Huge: " + b"y" * 1_000_000)
    assert submit(mta, "someone@sender.example", data)[0] == 250
    (message,) = by_message_id(mta.wait_for_delivery("alice", 1), msgid)
    assert "X-Huge too long" in message["X-MXGuard"], message["X-MXGuard"]
    msgid, data = message_from("Someone <someone@sender.example>", "nul", ["X-Nul: a"])
    data = data.replace(b"X-Nul: a", b"X-Nul: a\x00b \xff\xfe caf\xe9")
    code, text = submit(mta, "someone@sender.example", data)
    assert code in (250, 550, 554), text  # a verdict, whoever gives it
    assert mxguard.alive() and "internal error" not in mxguard.log_text()


def test_trusted_arc_sealer_excuses_a_forwarded_dmarc_failure(mta: PostfixInstance) -> None:
    """strict.example publishes p=reject; a list we trust (lists.example) sealed the message
    after seeing DMARC pass: it is delivered, with arc=pass, instead of being refused."""
    msgid, data = message_from("Boss <boss@strict.example>", "via the list")
    seen = b"Authentication-Results: lists.example; dmarc=pass header.from=strict.example\r\n"
    seal = dkim.arc_sign(seen + data, b"e2e", b"lists.example", KEY, b"lists.example")
    assert submit(mta, "bounces@sender.example", b"".join(seal) + seen + data)[0] == 250
    (message,) = by_message_id(mta.wait_for_delivery("alice", 1), msgid)
    results = " ".join(message["Authentication-Results"].split())
    assert "arc=pass" in results and "dmarc=fail" in results, results
    assert "dmarc.arc-override=tag" in message["X-MXGuard"]
    # Without the seal the same message is refused (test_dmarc_reject_failure_is_refused...).


def test_a_key_lookup_that_fails_defers_instead_of_refusing(
    mta: PostfixInstance, dns_server: TestDnsServer
) -> None:
    # The only aligned identifier of a p=reject domain is a signature whose key record
    # answers SERVFAIL: DMARC cannot tell, and Postfix answers the final dot with 451 4.4.3.
    dns_server.fail("down._domainkey.signed.example", "SERVFAIL")
    _, data = message_from("News <news@signed.example>", "key lookup fails")
    signature = dkim.sign(data, b"down", b"signed.example", KEY)
    code, text = submit(mta, "someone@sender.example", signature + data)
    assert code == 451, text
    assert text.startswith("4.4.3 dmarc: signed.example policy is reject"), text


def test_a_broken_second_signature_does_not_hide_the_valid_one(
    mta: PostfixInstance, dns_server: TestDnsServer
) -> None:
    dns_server.add('broken._domainkey.signed.example. IN TXT "v=DKIM1; k=rsa; p=d"')
    msgid, data = message_from("News <news@signed.example>", "two signatures")
    good = dkim.sign(data, b"e2e", b"signed.example", KEY)
    broken = dkim.sign(good + data, b"broken", b"signed.example", KEY)
    code, text = submit(mta, "someone@sender.example", broken + good + data)
    assert code == 250, text
    (message,) = by_message_id(mta.wait_for_delivery("alice", 1), msgid)
    results = " ".join(message["Authentication-Results"].split())
    assert "dkim=pass header.d=signed.example header.s=e2e" in results, results
    assert "header.d=signed.example header.s=broken" in results, results
    assert "dmarc=pass header.from=signed.example" in results, results
