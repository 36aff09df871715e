"""The MTA side of the milter protocol for tests, on top of the miltertest package.

miltertest cannot decode an option-negotiation reply that carries macro lists (SMFIR_OPTNEG with
setsymlist data, as mxguard sends), so this client reads that one packet itself.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from miltertest import MilterConnection
from miltertest import constants as C
from miltertest.codec import encode_optneg, optneg_mta_capable

REFUSALS = (C.SMFIR_REJECT, C.SMFIR_TEMPFAIL, C.SMFIR_REPLYCODE, C.SMFIR_DISCARD)


@dataclass
class Negotiated:
    """What the milter asked for during option negotiation."""

    actions: int
    protocol: int
    macros: dict[int, list[str]] = field(default_factory=dict)


class MtaClient(MilterConnection):
    """Speak to a milter as Postfix would: negotiate, then send steps and read replies."""

    @classmethod
    def connect_to(cls, host: str, port: int, timeout: float = 10) -> MtaClient:
        """Open a TCP connection to a milter (without Nagle's delay, like Postfix's client)."""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def negotiate(self) -> Negotiated:
        """Offer every v6 action and protocol step; return what the milter chose."""
        actions, protocol = optneg_mta_capable(C.SMFI_V6_ACTS, C.SMFI_V6_PROT)
        self.sock.sendall(encode_optneg(actions, protocol))
        length = struct.unpack("!I", self._read_exact(4))[0]
        payload = self._read_exact(length)
        assert payload[:1] == b"O", payload[:1]
        _version, got_actions, got_protocol = struct.unpack("!III", payload[1:13])
        macros: dict[int, list[str]] = {}
        rest = payload[13:]
        while len(rest) >= 4:
            stage = struct.unpack("!I", rest[:4])[0]
            end = rest.index(b"\0", 4)
            macros[stage] = rest[4:end].decode().split()
            rest = rest[end + 1 :]
        self.action_flags, self.protocol_flags = got_actions, got_protocol
        return Negotiated(got_actions, got_protocol, macros)

    def _read_exact(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError("milter closed the connection")
            data += chunk
        return data

    def step(self, cmd: str, no_reply_bit: int = 0, **args: object) -> tuple | None:
        """Send one step; wait for the reply unless the milter negotiated no reply for it."""
        if no_reply_bit and self.protocol_flags & no_reply_bit:
            self._send(cmd, **args)
            return None
        return self.send_get(cmd, **args)

    def macros(self, stage_cmd: str, **values: str) -> None:
        """Define macros for the next step, as the MTA does."""
        self.send_macro(stage_cmd, **values)

    def connect_step(
        self,
        address: str,
        port: int = 40000,
        hostname: str = "client.example",
        family: str = C.SMFIA_INET,
    ) -> tuple | None:
        """SMFIC_CONNECT."""
        return self.step(
            C.SMFIC_CONNECT,
            C.SMFIP_NR_CONN,
            hostname=hostname,
            family=family,
            port=port,
            address=address,
        )

    def helo(self, name: str) -> tuple | None:
        """SMFIC_HELO."""
        return self.step(C.SMFIC_HELO, C.SMFIP_NR_HELO, helo=name)

    def mail(self, sender: str, *esmtp: str) -> tuple | None:
        """SMFIC_MAIL."""
        return self.step(C.SMFIC_MAIL, C.SMFIP_NR_MAIL, args=[sender, *esmtp])

    def rcpt(self, recipient: str, *esmtp: str) -> tuple | None:
        """SMFIC_RCPT."""
        return self.step(C.SMFIC_RCPT, C.SMFIP_NR_RCPT, args=[recipient, *esmtp])

    def header(self, name: str, value: str) -> tuple | None:
        """SMFIC_HEADER; the value gets its leading space when the milter asked for it, as
        Postfix sends it then."""
        if self.protocol_flags & C.SMFIP_HDR_LEADSPC and not value.startswith((" ", "\t")):
            value = " " + value
        return self.step(C.SMFIC_HEADER, C.SMFIP_NR_HDR, name=name, value=value)

    def _raw_step(self, payload: bytes, no_reply_bit: int) -> tuple | None:
        """Send one command built here from bytes (miltertest encodes only text)."""
        self.sock.sendall(struct.pack("!I", len(payload)) + payload)
        if self.protocol_flags & no_reply_bit:
            return None
        return self.recv()

    def raw_header(self, name: bytes, value: bytes) -> tuple | None:
        """SMFIC_HEADER with arbitrary bytes."""
        return self._raw_step(b"L" + name + b"\0" + value + b"\0", C.SMFIP_NR_HDR)

    def body(self, data: bytes) -> tuple | None:
        """SMFIC_BODY (one chunk), unless the milter asked not to get the body."""
        if self.protocol_flags & C.SMFIP_NOBODY:
            return None
        return self._raw_step(b"B" + data, C.SMFIP_NR_BODY)

    def end_of_message(self) -> list[tuple]:
        """SMFIC_BODYEOB; returns the modification messages and the final disposition."""
        return self.send_eom()

    def quit(self) -> None:
        """SMFIC_QUIT and close."""
        try:
            self._send(C.SMFIC_QUIT)
        finally:
            self.sock.close()


def reply_text(reply: tuple | None) -> str:
    """The SMTP reply of an SMFIR_REPLYCODE message ('' for anything else)."""
    if reply is None or reply[0] != C.SMFIR_REPLYCODE:
        return ""
    return reply[1]["text"].rstrip("\0")


def split_message(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(raw fields, body) of a message as the MTA hands them to a milter: each value with its
    folds as LF line breaks, the body with CRLF line ends."""
    head, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\n" + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
        # Anything else is no field: an MTA would not have passed it on.
    return fields, body.replace(b"\n", b"\r\n")
