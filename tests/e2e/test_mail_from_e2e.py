"""MAIL FROM checks behind the real Postfix: SPF fail, softfail and temperror."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.postfix import PostfixInstance

from .test_postfix_e2e import HELO, by_message_id, make_message

pytestmark = pytest.mark.usefixtures("requires_mxguard")


def mail_from(mta: PostfixInstance, sender: str) -> tuple[int, str]:
    """EHLO and MAIL FROM as an outside client; the reply to MAIL."""
    with smtplib.SMTP(*mta.address, local_hostname=HELO, timeout=60) as client:
        assert client.ehlo()[0] == 250
        code, raw = client.mail(sender)
    return code, raw.decode()


def test_spf_fail_is_refused_at_mail_from(mta: PostfixInstance) -> None:
    """fail.example publishes -all without 127.0.0.1: 550 5.7.1 at MAIL FROM."""
    code, text = mail_from(mta, "someone@fail.example")
    assert code == 550, text
    assert text.startswith(
        "5.7.1 spf: someone@fail.example does not designate 127.0.0.1 as permitted sender"
    ), text


def test_spf_softfail_is_delivered_and_recorded(mta: PostfixInstance) -> None:
    """softfail.example publishes ~all: delivered, with spf=softfail in Authentication-Results."""
    msgid, data = make_message("softfail")
    with smtplib.SMTP(*mta.address, local_hostname=HELO, timeout=60) as client:
        client.sendmail("someone@softfail.example", ["alice@example.test"], data)
    (message,) = by_message_id(mta.wait_for_delivery("alice", 1), msgid)
    results = message["Authentication-Results"]
    assert "spf=softfail smtp.mailfrom=someone@softfail.example" in results, results
    assert "spf.softfail=tag" in message["X-MXGuard"]


def test_spf_temperror_is_answered_with_4xx(mta: PostfixInstance) -> None:
    """The sender domain's DNS times out: 451 4.4.3, so the sender retries."""
    code, text = mail_from(mta, "someone@slow.timeout.test")
    assert code == 451, text
    assert text.startswith("4.4.3 spf: cannot evaluate SPF of someone@slow.timeout.test"), text


def test_our_own_domain_from_outside_is_refused(mta: PostfixInstance) -> None:
    """example.test is ours and publishes no SPF: an outside client may not use it."""
    code, text = mail_from(mta, "ceo@example.test")
    assert code == 550, text
    assert text.startswith("5.7.1 spoof: ceo@example.test uses our domain example.test"), text


def test_sender_domain_that_cannot_receive_replies_is_refused(mta: PostfixInstance) -> None:
    """A MAIL FROM domain that does not exist: 550 5.1.8, nobody could answer it."""
    code, text = mail_from(mta, "someone@no-such-domain.example")
    assert code == 550, text
    assert text.startswith("5.1.8 sender: sender domain no-such-domain.example does not exist"), (
        text
    )
