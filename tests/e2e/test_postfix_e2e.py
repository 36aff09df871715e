"""mxguard behind a real Postfix, talking to a real (test) DNS server, driven by smtplib."""

from __future__ import annotations

import smtplib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest

from tests.support.mxguard_proc import MxguardProcess
from tests.support.postfix import PostfixInstance

pytestmark = pytest.mark.e2e

# The client is 127.0.0.1, whose PTR in the test DNS (conftest.ZONES) is client.sender.example,
# and sender.example's SPF record allows it.
HELO = "client.sender.example"
SENDER = "someone@sender.example"


def make_message(
    subject: str, to: str = "alice@example.test", extra: list[str] | None = None
) -> tuple[str, bytes]:
    """Return (Message-ID, wire bytes) of a small plain-text message, extra header lines first."""
    msgid = make_msgid(domain="sender.example")
    msg = EmailMessage()
    for line in extra or []:
        name, _, value = line.partition(":")
        msg[name.strip()] = value.strip()
    msg["From"] = f"Someone <{SENDER}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = msgid
    msg.set_content(f"{subject}\n\nThis is a test message.\n")
    return msgid, msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@dataclass
class Outcome:
    """How one SMTP transaction ended: the reply code and text, and at which command."""

    code: int
    text: str
    stage: str

    @property
    def accepted(self) -> bool:
        """Return whether the message was accepted (250 to the final dot)."""
        return self.stage == "DATA-END" and self.code == 250


def send(
    postfix: PostfixInstance,
    data: bytes,
    rcpts: tuple[str, ...] = ("alice@example.test",),
    before_data: Callable[[], None] | None = None,
) -> Outcome:
    """Run one SMTP session command by command; stop at the first reply that is not 2xx/3xx."""
    with smtplib.SMTP(*postfix.address, local_hostname=HELO, timeout=60) as client:
        code, text = client.ehlo()
        if code != 250:
            return Outcome(code, text.decode(), "EHLO")
        code, text = client.mail(SENDER)
        if code != 250:
            return Outcome(code, text.decode(), "MAIL")
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code != 250:
                return Outcome(code, text.decode(), "RCPT")
        if before_data is not None:
            before_data()
        try:
            code, text = client.data(data)
        except smtplib.SMTPDataError as refused:  # the reply to DATA itself was not 354
            return Outcome(refused.smtp_code, refused.smtp_error.decode(), "DATA")
        return Outcome(code, text.decode(), "DATA-END")


def by_message_id(messages: list[EmailMessage], msgid: str) -> list[EmailMessage]:
    """Return the messages whose Message-ID is msgid."""
    return [m for m in messages if str(m.get("Message-ID", "")).strip() == msgid]


def authserv_id(value: str) -> str:
    """Return the authserv-id of an Authentication-Results value (without its version)."""
    return value.split(";", 1)[0].split()[0].strip().lower()


# -- 1. relay tricks ----------------------------------------------------------------------------


@pytest.mark.usefixtures("requires_mxguard")
def test_relay_tricks_refused_at_rcpt_and_valid_recipient_still_delivered(
    mta: PostfixInstance,
) -> None:
    """user%host@ and host!user@ get 550 5.7.1 relay: at RCPT; alice in the same session gets it."""
    msgid, data = make_message("relay tricks and one valid recipient")
    with smtplib.SMTP(*mta.address, local_hostname=HELO, timeout=60) as client:
        assert client.ehlo()[0] == 250
        assert client.mail(SENDER)[0] == 250
        for trick in ("alice%evil.example@example.test", "evil.example!alice@example.test"):
            code, raw = client.docmd(f"RCPT TO:<{trick}>")
            text = raw.decode()
            assert code == 550, f"RCPT TO:<{trick}> got {code} {text}"
            status, _, reason = text.partition(" ")
            assert status == "5.7.1", f"RCPT TO:<{trick}>: {code} {text}"
            assert reason.startswith("relay:"), f"RCPT TO:<{trick}>: {code} {text}"
        code, raw = client.rcpt("alice@example.test")
        assert code == 250, f"valid recipient refused: {code} {raw.decode()}"
        code, raw = client.data(data)
        assert code == 250, f"message refused: {code} {raw.decode()}"

    delivered = by_message_id(mta.wait_for_delivery("alice", 1), msgid)
    assert len(delivered) == 1
    assert delivered[0]["Delivered-To"] == "alice@example.test"
    mta.wait_for_empty_queue()
    # The refused recipients reached no mailbox: the catch-all would have taken them.
    assert mta.mailbox("catchall") == []
    assert [m["Delivered-To"] for m in mta.mailbox("alice")] == ["alice@example.test"]


# -- 2. headers -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("requires_mxguard")
def test_clean_message_delivered_with_one_authentication_results(mta: PostfixInstance) -> None:
    """A clean message arrives with exactly one Authentication-Results (ours) and X-MXGuard."""
    msgid, data = make_message("clean")
    outcome = send(mta, data)
    assert outcome.accepted, outcome

    (message,) = by_message_id(mta.wait_for_delivery("alice", 1), msgid)
    results = [str(v) for v in message.get_all("Authentication-Results", [])]
    assert len(results) == 1, results
    assert authserv_id(results[0]) == "mx.example.test", results
    assert message.get_all("X-MXGuard"), f"no X-MXGuard header in:\n{message}"


@pytest.mark.usefixtures("requires_mxguard")
def test_forged_authentication_results_removed_foreign_kept(mta: PostfixInstance) -> None:
    """An incoming A-R claiming our authserv-id is removed; one from another id is kept."""
    forged = "mx.example.test; spf=pass smtp.mailfrom=forged.example"
    foreign = "other.example; spf=fail smtp.mailfrom=sender.example"
    msgid, data = make_message(
        "forged authentication results",
        extra=[f"Authentication-Results: {forged}", f"Authentication-Results: {foreign}"],
    )
    outcome = send(mta, data)
    assert outcome.accepted, outcome

    (message,) = by_message_id(mta.wait_for_delivery("alice", 1), msgid)
    results = [str(v) for v in message.get_all("Authentication-Results", [])]
    ours = [r for r in results if authserv_id(r) == "mx.example.test"]
    assert len(ours) == 1, results
    assert "forged.example" not in ours[0], f"the forged header survived: {results}"
    assert foreign in results, f"the other.example header was not kept: {results}"
    assert len(results) == 2, results
    assert message.get_all("X-MXGuard"), f"no X-MXGuard header in:\n{message}"


# -- 3. mxguard dies mid-run ------------------------------------------------------------------


def test_milter_killed_mid_run_loses_and_duplicates_nothing(
    mta: PostfixInstance, mxguard: MxguardProcess
) -> None:
    """SIGKILL mxguard part-way: each message is delivered or 4xx'd; resent, all arrive once."""
    total, kill_at, restart_at = 20, 6, 11
    messages = [make_message(f"run {i:02d}") for i in range(total)]
    outcomes: dict[int, Outcome] = {}

    for i, (_msgid, data) in enumerate(messages):
        if i == restart_at:
            mxguard.start()
        # Message kill_at is in the middle of its transaction (after RCPT) when mxguard dies.
        outcomes[i] = send(mta, data, before_data=mxguard.kill if i == kill_at else None)

    report = "\n".join(f"{i:2d}: {o.stage} {o.code} {o.text}" for i, o in outcomes.items())
    assert not [o for o in outcomes.values() if o.code >= 500], f"5xx replies:\n{report}"
    deferred = [i for i, o in outcomes.items() if not o.accepted]
    assert all(400 <= outcomes[i].code < 500 for i in deferred), report
    assert set(range(kill_at, restart_at)) <= set(deferred), f"not 4xx while down:\n{report}"
    # Killed after RCPT: Postfix notices at the next milter event it sends, the DATA command
    # if the milter asked for it (noop_milter), else the first header, answered at the dot.
    assert outcomes[kill_at].stage in ("DATA", "DATA-END"), f"mid-transaction kill:\n{report}"
    assert all(outcomes[i].accepted for i in range(restart_at, total)), report

    # A sending MTA retries what got 4xx.
    for i in deferred:
        retry = send(mta, messages[i][1])
        assert retry.accepted, f"retry of message {i}: {retry}"

    mta.wait_for_delivery("alice", total)
    mta.wait_for_empty_queue()
    seen = Counter(str(m.get("Message-ID", "")).strip() for m in mta.mailbox("alice"))
    expected = Counter(msgid for msgid, _data in messages)
    assert seen == expected, f"lost: {expected - seen}, duplicated or unexpected: {seen - expected}"
