"""The submission listener of the real Postfix, with SMTP AUTH from a Cyrus sasldb.

Postfix's submission service here lets an unauthenticated MAIL through on purpose, so that
mxguard has to hold the line; it names itself ``submission`` to the milter, and hands over
``{auth_authen}`` as user@realm.
"""

from __future__ import annotations

import re
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

import dkim
import pytest

from tests.support.postfix import PostfixInstance

from .conftest import DKIM_RECORD, RATE_LIMITED, SASL_USERS
from .test_postfix_e2e import by_message_id

pytestmark = pytest.mark.usefixtures("requires_mxguard")


def message(author: str, to: str, subject: str) -> tuple[str, bytes]:
    msgid = make_msgid(domain="example.test")
    msg = EmailMessage()
    msg["From"] = author
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = msgid
    msg.set_content(f"{subject}\n\nSent through the submission listener.\n")
    return msgid, msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def submit(
    mta: PostfixInstance, login: str | None, sender: str, rcpts: list[str], data: bytes
) -> tuple[int, str, str]:
    """One transaction on the submission port: (code, text, the command that got it)."""
    with smtplib.SMTP(*mta.submission_address, local_hostname="pc.example.test", timeout=60) as c:
        c.ehlo()
        if login is not None:
            c.login(login, SASL_USERS[login])
        code, text = c.mail(sender)
        if code != 250:
            return code, text.decode(), "MAIL"
        for rcpt in rcpts:
            code, text = c.rcpt(rcpt)
            if code != 250:
                return code, text.decode(), "RCPT"
        try:
            code, text = c.data(data)
        except smtplib.SMTPDataError as refused:
            return refused.smtp_code, refused.smtp_error.decode(), "DATA"
        return code, text.decode(), "DATA-END"


def test_unauthenticated_submission_is_refused(mta: PostfixInstance) -> None:
    _, data = message("carol@example.test", "alice@example.test", "no auth")
    code, text, stage = submit(mta, None, "carol@example.test", ["alice@example.test"], data)
    assert (code, stage) == (530, "MAIL"), text
    assert text == "5.7.0 Authentication required", text


def test_authenticated_user_sends_as_self_signed_and_tagged(mta: PostfixInstance) -> None:
    msgid, data = message("Carol <carol@example.test>", "alice@example.test", "as self")
    code, text, stage = submit(
        mta, "carol@example.test", "carol@example.test", ["alice@example.test"], data
    )
    assert (code, stage) == (250, "DATA-END"), text
    (delivered,) = by_message_id(mta.wait_for_delivery("alice", 1), msgid)
    # BATV: the envelope sender left tagged.
    return_path = delivered["Return-Path"]
    assert re.fullmatch(r"<prvs=\d{4}[0-9a-f]{6}=carol@example\.test>", return_path), return_path
    # DKIM: the signature verifies against the key published in the test DNS.
    record = DKIM_RECORD.strip()
    raw = delivered.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert b"DKIM-Signature:" in raw
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record.encode())
    # A bounce to the tagged address is accepted and reaches carol, untagged.
    tagged = return_path.strip("<>")
    bounce_id, bounce = message("MAILER-DAEMON@elsewhere.example", tagged, "bounce")
    with smtplib.SMTP(*mta.address, local_hostname="client.sender.example", timeout=60) as client:
        client.sendmail("", [tagged], bounce)
    (returned,) = by_message_id(mta.wait_for_delivery("carol", 1), bounce_id)
    assert returned["Delivered-To"] == "carol@example.test"


def test_authenticated_user_may_not_send_as_someone_else(mta: PostfixInstance) -> None:
    _, data = message("boss@example.test", "alice@example.test", "as boss")
    code, text, stage = submit(
        mta, "carol@example.test", "boss@example.test", ["alice@example.test"], data
    )
    assert (code, stage) == (550, "MAIL"), text
    assert text == "5.7.1 submission: carol@example.test may not send as boss@example.test"
    _, data = message("The Boss <boss@example.test>", "alice@example.test", "header as boss")
    code, text, stage = submit(
        mta, "carol@example.test", "carol@example.test", ["alice@example.test"], data
    )
    assert (code, stage) == (550, "DATA-END"), text  # the reply to the final dot
    assert text.startswith("5.7.1 submission: carol@example.test may not send as boss@"), text


def test_rate_limit_defers_the_next_recipient(mta: PostfixInstance) -> None:
    rcpts = [f"dest{i}@elsewhere.example" for i in range(7)]
    _, data = message(RATE_LIMITED, "many@elsewhere.example", "too many")
    code, text, stage = submit(mta, RATE_LIMITED, RATE_LIMITED, rcpts, data)
    assert (code, stage) == (451, "RCPT"), text
    assert (
        text
        == "4.7.1 submission: erin@example.test: more than 6 recipients an hour, try again later"
    )
