"""What the checks learn from each other, over the real milter socket with a real DNS server:
"could not tell" never becomes a 5xx, a broken signature hides no valid one, an order that
cannot work stops startup, and the client behind our relay meets the RCPT checks too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from miltertest import constants as C

from tests.support.dnsserver import TestDnsServer
from tests.support.milterclient import reply_text, split_message
from tests.support.mxguard_proc import MilterStartError, MxguardProcess, free_port

from .conftest import BASE_CONFIG, client_for

DATA = Path(__file__).resolve().parent.parent / "data" / "dkim"
KEY = (DATA / "test.private").read_bytes()
RECORD = (DATA / "test.txt").read_text().strip()
OUTSIDER = "203.0.113.9"  # the forwarder: signed.example's mail comes through it
LISTED = "198.51.100.77"  # an outside client that zen.example lists


def _txt(text: str) -> str:
    return "(" + " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200)) + ")"


ZONES = f"""
forwarder.example.        IN TXT  "v=spf1 ip4:{OUTSIDER} -all"
signed.example.           IN TXT  "v=spf1 -all"
_dmarc.signed.example.    IN TXT  "v=DMARC1; p=reject"
good._domainkey.signed.example. IN TXT {_txt(RECORD)}
bad._domainkey.signed.example.  IN TXT "v=DKIM1; k=rsa; p=d"
sender.example.           IN TXT  "v=spf1 ip4:{OUTSIDER} -all"
_dmarc.sender.example.    IN TXT  "v=DMARC1; p=none"
bad._domainkey.sender.example.  IN TXT "v=DKIM1; k=ed25519; p=abc"
example.test.             IN TXT  "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.test.      IN TXT  "v=DMARC1; p=reject"
relayed.example.          IN TXT  "v=spf1 ip4:198.51.100.0/24 -all"
77.100.51.198.zen.example. IN A   127.0.0.2
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[TestDnsServer]:
    with TestDnsServer(ZONES) as server:
        server.fail("down._domainkey.signed.example", "SERVFAIL")
        server.fail("slow._domainkey.signed.example", "TIMEOUT")
        server.fail("down._domainkey.example.test", "SERVFAIL")
        yield server


def _config(tmp_path: Path, dns: TestDnsServer, **extra: dict[str, str]) -> dict:
    config = {section: dict(values) for section, values in BASE_CONFIG.items()}
    config["milter"]["socket"] = f"inet:{free_port()}@127.0.0.1"
    config["state"] = {"url": f"sqlite:///{tmp_path}/state.db"}
    config["dns"] = {"nameservers": f"127.0.0.1:{dns.port}", "timeout": "1s"}
    config["spf"] = {"enabled": "yes"}
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    return config


@pytest.fixture(scope="module")
def mxguard(
    tmp_path_factory: pytest.TempPathFactory, dns: TestDnsServer
) -> Iterator[MxguardProcess]:
    work = tmp_path_factory.mktemp("could-not-tell")
    process = MxguardProcess(_config(work, dns), work_dir=work).start()
    yield process
    process.stop()


def message(author: str, *selectors: tuple[bytes, bytes]) -> bytes:
    """A message from ``author``, signed by each (selector, domain) in turn."""
    data = (
        f"From: {author}\r\nTo: alice@example.test\r\nSubject: hello\r\n"
        "Message-ID: <m1@forwarder.example>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
        "\r\nHello.\r\n"
    ).encode()
    for selector, domain in selectors:
        data = dkim.sign(data, selector, domain, KEY) + data
    return data


def deliver(
    process: MxguardProcess,
    data: bytes,
    sender: str = "<fwd@forwarder.example>",
    ip: str = OUTSIDER,
    recipients: tuple[str, ...] = ("<alice@example.test>",),
) -> tuple:
    """One transaction over the milter socket; the final disposition at end of message."""
    client = client_for(process)
    client.macros(C.SMFIC_CONNECT, j="mx.example.test", **{"{daemon_name}": "mx"})
    client.connect_step(ip)
    client.helo("mail.forwarder.example")
    assert client.mail(sender) == (C.SMFIR_CONTINUE, {})
    for recipient in recipients:
        assert client.rcpt(recipient) == (C.SMFIR_CONTINUE, {})
    fields, body = split_message(data)
    for name, value in fields:
        client.raw_header(name, value)
    client.body(body)
    replies = client.end_of_message()
    client.quit()
    return replies


def final(replies: list[tuple]) -> tuple[str, str]:
    """(SMTP code or disposition, reply text) of the end of message."""
    last = replies[-1]
    if last[0] == C.SMFIR_REPLYCODE:
        return last[1]["smtpcode"], reply_text(last)
    return last[0], ""


def added(replies: list[tuple], name: str) -> str:
    """The value of the header field mxguard added (insheader) called ``name``."""
    for reply in replies:
        if reply[0] == C.SMFIR_INSHEADER and reply[1]["name"] == name:
            return " ".join(reply[1]["value"].split())
    return ""


@pytest.mark.parametrize("selector", [b"down", b"slow"], ids=["servfail", "timeout"])
def test_an_aligned_signature_whose_key_cannot_be_fetched_defers(
    mxguard: MxguardProcess, selector: bytes
) -> None:
    # Defect 1: SPF passes for the forwarder, the only aligned identifier is a signature
    # whose key lookup fails: DMARC cannot tell, so 451 4.4.3, never 550.
    code, text = final(
        deliver(mxguard, message("Boss <boss@signed.example>", (selector, b"signed.example")))
    )
    assert code == "451", text
    assert text.startswith("4.4.3 dmarc: signed.example policy is reject"), text
    assert "could not be checked for signed.example" in text, text


def test_the_same_message_with_a_key_that_verifies_passes(mxguard: MxguardProcess) -> None:
    replies = deliver(mxguard, message("Boss <boss@signed.example>", (b"good", b"signed.example")))
    assert final(replies)[0] in (C.SMFIR_CONTINUE, C.SMFIR_ACCEPT)
    assert "dmarc=pass" in added(replies, "Authentication-Results")


def test_a_broken_second_signature_hides_no_valid_one(mxguard: MxguardProcess) -> None:
    # Defect 2: the valid signature of the p=reject author domain is still verified.
    data = message(
        "Boss <boss@signed.example>", (b"good", b"signed.example"), (b"bad", b"signed.example")
    )
    replies = deliver(mxguard, data)
    assert final(replies)[0] in (C.SMFIR_CONTINUE, C.SMFIR_ACCEPT), final(replies)
    results = added(replies, "Authentication-Results")
    assert "dkim=pass header.d=signed.example header.s=good" in results, results
    assert re.search(r"dkim=permerror [^;]*header\.d=signed\.example header\.s=bad", results)
    assert "dmarc=pass" in results, results


def test_a_garbage_key_record_is_a_permerror_not_an_internal_error(mxguard: MxguardProcess) -> None:
    # Defect 3: signed only by a domain whose key record is not base64 (k=ed25519; p=abc):
    # dkim=permerror and the message is judged on the rest (p=none: accepted), no 451 4.3.0.
    replies = deliver(
        mxguard,
        message("Someone <someone@sender.example>", (b"bad", b"sender.example")),
        "<a@sender.example>",
    )
    assert final(replies)[0] in (C.SMFIR_CONTINUE, C.SMFIR_ACCEPT), final(replies)
    results = added(replies, "Authentication-Results")
    assert re.search(r"dkim=permerror [^;]*header\.d=sender\.example", results), results
    assert "internal error" not in mxguard.log_text()


def test_our_domain_signed_with_a_key_that_cannot_be_fetched_defers(
    mxguard: MxguardProcess,
) -> None:
    # The spoof check's exemption (an aligned signature of ours) could not be told: 451.
    replies = deliver(mxguard, message("CEO <ceo@example.test>", (b"down", b"example.test")))
    code, text = final(replies)
    assert code == "451", text
    assert text.startswith("4.4.3 "), text
    assert "cannot tell now" in text or "could not be checked" in text, text


@pytest.mark.parametrize(
    ("order", "named"),
    [("spoof, spf", "spoof comes before spf"), ("dmarc, dkim", "dmarc comes before dkim")],
)
def test_an_order_that_cannot_work_stops_startup(
    tmp_path: Path, dns: TestDnsServer, order: str, named: str
) -> None:
    # Defect 4: checks placed before the checks whose findings they need.
    process = MxguardProcess(_config(tmp_path, dns, milter={"order": order}), work_dir=tmp_path)
    with pytest.raises(MilterStartError):
        process.start()
    log = process.log_text()
    assert "[milter] order: " + named in log, log
    assert not process.alive()


def test_the_listed_client_behind_our_relay_meets_the_rcpt_checks(
    tmp_path: Path, dns: TestDnsServer
) -> None:
    # Defect 5: with find_client, the outside client named by our trusted relay's Received
    # field is judged at RCPT too, where dnsbl decides by default.
    config = _config(
        tmp_path,
        dns,
        received={"find_client": "yes"},
        dnsbl={"zones": "zen.example"},
    )
    process = MxguardProcess(config, work_dir=tmp_path).start()
    try:
        hop = (
            f"from out.sender.example (out.sender.example [{LISTED}]) by relay.example.test "
            "with ESMTP id 1; Mon, 7 Dec 2026 10:00:00 +0000"
        )
        data = f"Received: {hop}\r\n".encode() + message("Someone <someone@relayed.example>")
        code, text = final(deliver(process, data, "<a@relayed.example>", ip="192.0.2.10"))
        assert code == "550", text
        assert text.startswith(f"5.7.1 dnsbl: {LISTED} listed by zen.example"), text
        # The relay itself is trusted: the same message from a clean outside client passes.
        clean = data.replace(LISTED.encode(), b"198.51.100.78")
        assert final(deliver(process, clean, "<a@relayed.example>", ip="192.0.2.10"))[0] in (
            C.SMFIR_CONTINUE,
            C.SMFIR_ACCEPT,
        )
    finally:
        process.stop()
