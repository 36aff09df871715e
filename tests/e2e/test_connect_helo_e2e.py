"""Connect and HELO checks behind the real Postfix: a listed client and a forged HELO."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.postfix import PostfixInstance

from .conftest import LISTED_CLIENT
from .test_postfix_e2e import HELO, SENDER, by_message_id, make_message

pytestmark = pytest.mark.usefixtures("requires_mxguard")


def test_dnsbl_listed_client_is_refused_at_the_first_rcpt(mta: PostfixInstance) -> None:
    """127.0.0.2 is listed by dnsbl.test: 550 5.7.1 at RCPT, with the zone's TXT text."""
    with smtplib.SMTP(
        *mta.address, local_hostname=HELO, source_address=(LISTED_CLIENT, 0), timeout=60
    ) as client:
        assert client.ehlo()[0] == 250
        assert client.mail(SENDER)[0] == 250, "refused before RCPT: the log would lack the rcpt"
        code, raw = client.rcpt("alice@example.test")
    assert code == 550, raw
    assert raw.decode() == (
        "5.7.1 dnsbl: 127.0.0.2 listed by dnsbl.test: spam source, see https://dnsbl.test/127.0.0.2"
    )
    assert mta.mailbox("alice") == []


def test_unlisted_client_delivers(mta: PostfixInstance) -> None:
    """The same message from 127.0.0.1 (not listed) arrives."""
    msgid, data = make_message("from an unlisted client")
    with smtplib.SMTP(*mta.address, local_hostname=HELO, timeout=60) as client:
        client.sendmail(SENDER, ["alice@example.test"], data)
    assert len(by_message_id(mta.wait_for_delivery("alice", 1), msgid)) == 1


@pytest.mark.parametrize(
    "helo",
    ["mx.example.test", "example.test", "[127.0.0.9]"],
    ids=["our-name", "our-domain", "not-its-literal"],
)
def test_forged_helo_is_refused_at_mail(mta: PostfixInstance, helo: str) -> None:
    """A client greeting with our own name (or another host's literal) gets 550 5.7.1 at MAIL."""
    with smtplib.SMTP(*mta.address, local_hostname=helo, timeout=60) as client:
        assert client.ehlo()[0] == 250, "HELO verdicts wait for MAIL, when AUTH is known"
        code, raw = client.mail(SENDER)
    assert code == 550, raw
    text = raw.decode()
    assert text.startswith("5.7.1 helo: "), text
    assert helo in text
