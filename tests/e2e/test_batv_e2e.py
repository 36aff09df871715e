"""BATV through the real Postfix: our mail leaves tagged, a bounce to the tag arrives untagged,
and a bounce to a forged tag is refused."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.postfix import PostfixInstance

from .conftest import OUR_RELAY
from .test_postfix_e2e import HELO, by_message_id, make_message

pytestmark = pytest.mark.usefixtures("requires_mxguard")


def test_tagged_sender_and_the_bounce_to_it(mta: PostfixInstance) -> None:
    """alice's mail via our relay gets a prvs= envelope sender; a bounce to it reaches alice."""
    msgid, data = make_message("outbound", to="bob@example.test")
    with smtplib.SMTP(
        *mta.address, local_hostname=HELO, source_address=(OUR_RELAY, 0), timeout=60
    ) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], data)
    (sent,) = by_message_id(mta.wait_for_delivery("bob", 1), msgid)
    return_path = sent["Return-Path"].strip("<>")
    assert return_path.startswith("prvs=") and return_path.endswith("=alice@example.test"), (
        return_path
    )

    bounce_id, bounce = make_message("bounce to the tagged sender")
    with smtplib.SMTP(*mta.address, local_hostname=HELO, timeout=60) as client:
        client.sendmail("<>", [return_path], bounce)
    (delivered,) = by_message_id(mta.wait_for_delivery("alice", 1), bounce_id)
    assert delivered["Delivered-To"] == "alice@example.test"
    assert mta.mailbox("catchall") == [], "the tagged address must not reach the catch-all"


def test_bounce_to_a_forged_tag_is_refused(mta: PostfixInstance) -> None:
    """A null-sender message to a prvs= address with a wrong signature: 550 5.7.1."""
    with smtplib.SMTP(*mta.address, local_hostname=HELO, timeout=60) as client:
        assert client.ehlo()[0] == 250
        assert client.mail("<>")[0] == 250
        code, raw = client.rcpt("prvs=0123abcdef=alice@example.test")
    assert code == 550, raw
    assert raw.decode().startswith("5.7.1 backscatter:"), raw
