"""What is known at each SMTP stage, as frozen data that checks read and never change.

A ``Connection`` lasts for the SMTP session; an ``Envelope`` for one MAIL ... end-of-data
transaction; a ``Recipient`` is the RCPT being decided; a ``Message`` exists at end of message.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from mxguard.core.findings import NONE, Findings
from mxguard.mail.address import Mailbox, NullPath
from mxguard.mail.address_error import AddressError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Path = Mailbox | NullPath | AddressError


def normalise_ip(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:192.0.2.1) as the IPv4 address it carries."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Stage(enum.StrEnum):
    """The SMTP stages a check can act on, in protocol order."""

    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    EOM = "eom"


@dataclass(frozen=True, slots=True)
class Connection:
    """The client and the listener, for the whole SMTP session."""

    client_ip: IPAddress | None
    client_name: str = ""  # the MTA's name for the client ("unknown" or "[ip]" without PTR)
    helo: str = ""
    daemon_name: str = ""
    interface_ip: IPAddress | None = None  # the address the client connected to
    mta_name: str = ""  # macro j: the MTA's own host name
    auth_user: str = ""
    auth_type: str = ""
    trusted: bool = False  # client_ip is in [milter] trusted_networks
    submission: bool = False  # daemon_name is in [milter] submission_daemons
    # Behind a front-end MTA ([received] find_client): the trusted relay that handed the
    # message over, while client_ip and helo are those of the outside client it names.
    relay_ip: IPAddress | None = None

    @property
    def authenticated(self) -> bool:
        """True when the client logged in with SMTP AUTH."""
        return bool(self.auth_user)

    @property
    def ours(self) -> bool:
        """True for our own clients (trusted or authenticated), whose mail we send out."""
        return self.trusted or self.authenticated

    @property
    def client_text(self) -> str:
        """The client's address for logs and replies ('unknown' for a non-IP client)."""
        return str(self.client_ip) if self.client_ip is not None else "unknown"


@dataclass(frozen=True, slots=True)
class Recipient:
    """One RCPT TO, as the client gave it and as parsed."""

    raw: str
    path: Path
    esmtp: tuple[str, ...] = ()
    mta_rejected: bool = False  # the MTA refused it already ({rcpt_mailer} = error)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One transaction: MAIL FROM and the recipients accepted so far."""

    raw_sender: str
    sender: Path
    esmtp: tuple[str, ...] = ()
    recipients: tuple[Recipient, ...] = ()
    queue_id: str = ""


def _decoded(value: bytes) -> str:
    """A raw header value as text: UTF-8 where it decodes, U+FFFD where not; never raises."""
    return value.decode("utf-8", errors="replace").lstrip(" \t")


@dataclass(frozen=True, slots=True)
class Message:
    """The message at end of data: its header fields in arrival order and, when an enabled
    check reads it, its body.

    ``raw_headers`` are the fields exactly as the MTA sent them: the value keeps its leading
    white space when the MTA was asked for it (SMFIP_HDR_LEADSPC) and its folds as LF line
    breaks. ``headers`` is the text view the checks read: decoded as UTF-8 (U+FFFD for bytes
    that are not), leading white space removed.
    """

    headers: tuple[tuple[str, str], ...] = ()
    raw_headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""  # CRLF line ends, as the MTA sends it; empty when no check reads it
    body_size: int = 0

    @classmethod
    def from_raw(
        cls, raw_headers: Iterable[tuple[bytes, bytes]], body: bytes = b"", body_size: int = 0
    ) -> Message:
        """A message from the fields and body as the MTA sent them."""
        raw = tuple(raw_headers)
        text = tuple(
            (name.decode("utf-8", errors="replace"), _decoded(value)) for name, value in raw
        )
        return cls(text, raw, body, body_size or len(body))

    @classmethod
    def from_text(cls, headers: Iterable[tuple[str, str]], body: bytes = b"") -> Message:
        """A message from text header fields (tests and tools); the raw view is their UTF-8."""
        fields = tuple(headers)
        raw = tuple((n.encode(), (" " + v.lstrip(" \t")).encode()) for n, v in fields)
        return cls.from_raw(raw, body)

    def values(self, name: str) -> list[str]:
        """The text values of every field called ``name`` (case-insensitive), in order."""
        key = name.lower()
        return [value for field, value in self.headers if field.lower() == key]

    def crlf_fields(self) -> list[tuple[bytes, bytes]]:
        """The fields in SMTP form: each value with its leading space and CRLF line ends."""
        fields = []
        for name, value in self.raw_headers:
            if value and not value.startswith((b" ", b"\t")):
                value = b" " + value  # the MTA stripped it; one space is what nearly all send
            fields.append((name, value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"))
        return fields

    def as_bytes(self) -> bytes:
        """The message in SMTP form (CRLF line ends), as a DKIM verifier must see it."""
        head = b"".join(name + b":" + value for name, value in self.crlf_fields())
        return head + b"\r\n" + self.body


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything a check may read at one stage; later parts are None at earlier stages.

    ``findings`` are what the checks before this one found in this transaction (and, for
    the connect and HELO kinds, in this connection): see ``findings``."""

    stage: Stage
    connection: Connection
    envelope: Envelope | None = None
    recipient: Recipient | None = None
    message: Message | None = None
    findings: Findings = field(default=NONE)

    def knowing(self, findings: Findings) -> Facts:
        """The same facts with ``findings`` (built directly: the pipeline does this after
        every check that found something, and dataclasses.replace is several times slower)."""
        return Facts(
            self.stage, self.connection, self.envelope, self.recipient, self.message, findings
        )
