"""What is known at each SMTP stage, as frozen data that checks read and never change.

A ``Connection`` lasts for the SMTP session; an ``Envelope`` for one MAIL ... end-of-data
transaction; a ``Recipient`` is the RCPT being decided; a ``Message`` exists at end of message.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from .address import AddressError, Mailbox, NullPath

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

    @property
    def authenticated(self) -> bool:
        """True when the client logged in with SMTP AUTH."""
        return bool(self.auth_user)

    @property
    def exempt(self) -> bool:
        """True for our own clients (trusted or authenticated): inbound checks usually skip them."""
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


@dataclass(frozen=True, slots=True)
class Message:
    """The header fields (name, value) in arrival order. The body is not asked for until a
    check needs it."""

    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything a check may read at one stage; later parts are None at earlier stages."""

    stage: Stage
    connection: Connection
    envelope: Envelope | None = None
    recipient: Recipient | None = None
    message: Message | None = None
    earlier: tuple = field(default=())  # verdicts of earlier stages of this transaction
