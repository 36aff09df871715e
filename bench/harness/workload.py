"""The mail the benchmark replays: the client, the messages, and the key that signs them."""

from __future__ import annotations

import base64
import email.utils
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import WAIT_RCPT, WAIT_RCPT_550

CLIENT_IP = "203.0.113.25"  # outside trusted_networks: every check runs
CLIENT_NAME = "mail.sender.test"
MX_NAME = "mx.example.test"
MX_IP = "192.0.2.25"
SENDER = "newsletter@sender.test"
RECIPIENTS = ("alice@example.test", "bob@example.test")
RELAY_TRICK = "a%b@example.test"  # the percent hack: mxguard's relay check must refuse it
DKIM_SELECTOR = "bench"
DKIM_DOMAIN = "sender.test"
POSTFIX_VERSION = "Postfix 3.7.11"


@dataclass(frozen=True)
class Transaction:
    """One message as the MTA reports it (negotiation-independent)."""

    queue_id: str
    sender: str
    recipients: tuple[tuple[str, int], ...]  # (address, WAIT_RCPT or WAIT_RCPT_550)
    headers: tuple[tuple[str, str], ...]  # values folded with LF, as Postfix sends them
    body: bytes  # CRLF line ends, as Postfix sends it


@dataclass(frozen=True)
class Workload:
    """The SMTP sessions the benchmark replays, cycling through ``transactions``."""

    transactions: tuple[Transaction, ...]
    chunk_size: int = 65535  # Postfix sends the body in chunks of up to 64 KiB
    client_port: int = 40025

    def connection_macros(self) -> dict[str, str]:
        """Macro values known at CONNECT and HELO."""
        return {
            "j": MX_NAME,
            "{daemon_name}": MX_NAME,
            "{daemon_addr}": MX_IP,
            "{client_addr}": CLIENT_IP,
            "{client_name}": CLIENT_NAME,
            "{client_ptr}": CLIENT_NAME,
            "v": POSTFIX_VERSION,
            "_": f"{CLIENT_NAME} [{CLIENT_IP}]",
        }


def make_body(size: int) -> bytes:
    """A plain-text body of about ``size`` bytes, CRLF line ends."""
    lines = ["Hello Alice,", ""]
    total = 0
    number = 0
    while total < size:
        number += 1
        line = (
            f"{number:03d}. The spring newsletter lists the courses, the opening hours of "
            "the library and the results of the club's annual general meeting."
        )
        lines.append(line)
        total += len(line) + 2
    lines += ["", "Kind regards,", "The sender.test team"]
    return ("\r\n".join(lines) + "\r\n").encode()


def make_dkim_key(work_dir: Path) -> tuple[bytes, str] | None:
    """A fresh 2048-bit RSA key with openssl: (private key PEM, DNS TXT value); None if no
    openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    key_file = work_dir / "dkim.pem"
    generate = [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    subprocess.run(
        [*generate, "-out", str(key_file)],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        [openssl, "pkey", "-in", str(key_file), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key_file.read_bytes(), f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


def make_transaction(
    number: int,
    recipients: Sequence[tuple[str, int]],
    body: bytes,
    dkim_key: tuple[bytes, str] | None,
) -> Transaction:
    """A newsletter-like message with realistic header fields, DKIM-signed when a key exists."""
    date = email.utils.formatdate(localtime=False)
    queue_id = f"4Xbench{number:04d}Q"
    genuine = [address for address, _ in recipients if "%" not in address]
    to = ", ".join(f"<{address}>" for address in genuine)
    fields = [
        ("From", f"Sender Newsletter <{SENDER}>"),
        ("To", to),
        ("Subject", f"Spring newsletter, issue {number}"),
        ("Date", date),
        ("Message-ID", f"<bench.{number}.{int(time.time())}@{DKIM_DOMAIN}>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "8bit"),
        ("List-Unsubscribe", f"<mailto:unsubscribe@{DKIM_DOMAIN}?subject=unsubscribe>"),
    ]
    received = (
        "Received",
        f"from submit.sender.test (submit.sender.test [203.0.113.40])\r\n"
        f"\tby {CLIENT_NAME} (Postfix) with ESMTPS id 4Xsend{number:04d}Z\r\n"
        f"\tfor <{genuine[0]}>; {date}",
    )
    headers = [received]
    if dkim_key is not None:
        headers.append(_dkim_signature(fields, body, dkim_key))
    headers += fields
    # Postfix hands folded values to milters with bare LF line breaks.
    lf_headers = tuple((name, value.replace("\r\n", "\n")) for name, value in headers)
    return Transaction(
        queue_id=queue_id,
        sender=SENDER,
        recipients=tuple(recipients),
        headers=lf_headers,
        body=body,
    )


def _dkim_signature(
    fields: Sequence[tuple[str, str]], body: bytes, dkim_key: tuple[bytes, str]
) -> tuple[str, str]:
    """The DKIM-Signature field over ``fields`` and ``body``, checked against the key record."""
    import dkim  # dkimpy, a dependency of mxguard; only a signing run needs it

    raw = b"".join(f"{name}: {value}\r\n".encode() for name, value in fields) + b"\r\n"
    signed = dkim.sign(
        raw + body,
        DKIM_SELECTOR.encode(),
        DKIM_DOMAIN.encode(),
        dkim_key[0],
        include_headers=[name.lower().encode() for name, _ in fields],
    )
    txt = dkim_key[1].encode()
    if not dkim.verify(signed + raw + body, dnsfunc=lambda _name, timeout=5: txt):
        raise RuntimeError("the benchmark's own DKIM signature does not verify")
    name, _, value = signed.decode().partition(":")
    return name, value.strip().rstrip("\r\n")


def make_workloads(
    body_bytes: int, chunk_size: int, dkim_key: tuple[bytes, str] | None
) -> tuple[Workload, Workload]:
    """The measured workload (one, then two recipients, alternately) and the relay probe."""
    body = make_body(body_bytes)
    one = [(RECIPIENTS[0], WAIT_RCPT)]
    two = [(address, WAIT_RCPT) for address in RECIPIENTS]
    measured = Workload(
        transactions=(
            make_transaction(1, one, body, dkim_key),
            make_transaction(2, two, body, dkim_key),
        ),
        chunk_size=chunk_size,
    )
    trick = [(RELAY_TRICK, WAIT_RCPT_550), (RECIPIENTS[0], WAIT_RCPT)]
    probe = Workload(
        transactions=(make_transaction(3, trick, body, dkim_key),), chunk_size=chunk_size
    )
    return measured, probe


def add_dkim_record(dns_server: Any, txt_value: str) -> None:
    """Publish the run's DKIM key (split into 255-byte strings) in the benchmark's DNS."""
    from dnslib import QTYPE, RR, TXT  # a test dependency, only needed once DNS runs

    data = txt_value.encode()
    strings = [data[i : i + 255] for i in range(0, len(data), 255)]
    dns_server.add_records(
        [
            RR(
                rname=f"{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}.",
                rtype=QTYPE.TXT,
                ttl=3600,
                rdata=TXT(strings),
            )
        ]
    )
