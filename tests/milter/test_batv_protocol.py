"""BATV over the real milter socket: CHGFROM for our users' mail, DELRCPT + ADDRCPT for bounces."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

import pytest
from miltertest import constants as C

from tests.support.milterclient import MtaClient, reply_text
from tests.support.mxguard_proc import MxguardProcess

from .conftest import client_for, start_mxguard

DISPOSITIONS = (C.SMFIR_CONTINUE, C.SMFIR_ACCEPT, C.SMFIR_REJECT, C.SMFIR_TEMPFAIL)
DISPOSITIONS += (C.SMFIR_DISCARD, C.SMFIR_REPLYCODE)


@pytest.fixture(scope="module")
def batv_mxguard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MxguardProcess]:
    process = start_mxguard(
        tmp_path_factory.mktemp("batv"), {"backscatter": {"batv_secret": "s3cret"}}
    )
    yield process
    process.stop()


def transaction(process: MxguardProcess, sender: str, ip: str, **mail_macros: str) -> MtaClient:
    client = client_for(process)
    client.macros(C.SMFIC_CONNECT, j="mx.example.test", **{"{daemon_name}": "mx"})
    client.connect_step(ip)
    client.helo("client.example")
    if mail_macros:
        client.macros(C.SMFIC_MAIL, **mail_macros)
    assert client.mail(sender) == (C.SMFIR_CONTINUE, {})
    return client


def end_of_message(client: MtaClient) -> list[tuple[str, list[str]]]:
    """SMFIC_BODYEOB; the replies up to the disposition as (command, NUL-separated strings).

    Read raw: miltertest cannot decode an SMFIR_CHGFROM without ESMTP arguments, which is
    what libmilter sends for chgfrom(address).
    """
    client._send(C.SMFIC_BODYEOB)
    replies = []
    while True:
        length = struct.unpack("!I", client._read_exact(4))[0]
        packet = client._read_exact(length)
        command = packet[:1].decode()
        replies.append((command, packet[1:].decode("latin-1").split("\0")[:-1]))
        if command in DISPOSITIONS:
            return replies


def test_tag_sent_out_and_bounce_to_it_delivered_untagged(batv_mxguard: MxguardProcess) -> None:
    outgoing = transaction(
        batv_mxguard,
        "<carol@example.test>",
        "198.51.100.7",
        **{"{auth_authen}": "carol", "{auth_type}": "PLAIN"},
    )
    assert outgoing.rcpt("<dave@elsewhere.example>") == (C.SMFIR_CONTINUE, {})
    edits = end_of_message(outgoing)
    assert edits[-1][0] == C.SMFIR_CONTINUE
    (change,) = [args for command, args in edits if command == C.SMFIR_CHGFROM]
    tagged = change[0]
    assert re.fullmatch(r"prvs=\d\d{3}[0-9a-f]{6}=carol@example\.test", tagged), tagged
    outgoing.quit()

    bounce = transaction(batv_mxguard, "<>", "203.0.113.9")
    assert bounce.rcpt(f"<{tagged}>") == (C.SMFIR_CONTINUE, {})
    edits = end_of_message(bounce)
    assert edits[-1][0] == C.SMFIR_CONTINUE
    assert [args for command, args in edits if command == C.SMFIR_DELRCPT] == [[f"<{tagged}>"]]
    assert [args for command, args in edits if command == C.SMFIR_ADDRCPT] == [
        ["carol@example.test"]
    ]
    assert not any(command == C.SMFIR_CHGFROM for command, _ in edits)
    bounce.quit()


def test_forged_tag_refused(batv_mxguard: MxguardProcess) -> None:
    bounce = transaction(batv_mxguard, "<>", "203.0.113.9")
    reply = bounce.rcpt("<prvs=0123abcdef=carol@example.test>")
    assert reply[0] == C.SMFIR_REPLYCODE and reply[1]["smtpcode"] == "550"
    assert reply_text(reply).startswith("5.7.1 backscatter: bad BATV signature")
    bounce.quit()
    assert "Traceback" not in batv_mxguard.log_text()
