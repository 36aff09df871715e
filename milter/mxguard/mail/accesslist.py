"""Access-list files: ``KEY ACTION [TEXT]`` lines parsed into a table, and lookups in it.

Pure: text in, entries and problems out; the lookups take plain values. Reading the files and
turning a match into a verdict is the access check's job; the file format is documented there
(``checks/access.py``) and in the README.

A line that cannot be used is reported as ``file:line: what is wrong`` and skipped; the rest
of the file still applies. Only whole lines are comments: a ``#`` later in a line is part of
the text, as in Postfix tables.

Which entry decides (:func:`lookup`): client address entries first, then client host-name
entries, then sender entries; the first of the three with any match decides, because a
client cannot forge its address and a sender is easily forged. Within one kind the most
specific match wins (longest prefix; longest host-name suffix; the exact address, then
``user@``, then ``@domain``), and at equal specificity ``deny`` wins over ``allow``.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from mxguard.mail.address import Mailbox, parse_path
from mxguard.mail.domain_name import Domain, parse_domain
from mxguard.mail.textutil import printable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ACTIONS = {"allow": True, "deny": False}
# Characters of keys that are meant as IP addresses or networks (a bare "1.2.3" is one too:
# taking it as a host name would make a typo silently match nothing).
_NUMERIC = frozenset("0123456789./")
_TEXT_LIMIT = 200


class KeyKind(enum.StrEnum):
    """What a key is matched against."""

    NETWORK = "network"  # the client address
    HOST = "host"  # the client name, equal to the key or a subdomain of it
    SUBDOMAIN = "subdomain"  # ".example.com": the client name, a subdomain only
    ADDRESS = "address"  # the sender, exactly
    LOCAL_PART = "local-part"  # "user@": the sender's local part
    DOMAIN = "domain"  # "@example.com": the sender's domain


@dataclass(frozen=True, slots=True)
class Entry:
    """One usable line of an access file."""

    kind: KeyKind
    key: str | tuple[int, int, int]  # normalised key; (version, prefix length, network) for IPs
    written: str  # the key as the file has it, for logs
    allow: bool
    text: str  # the reply text of a deny, or a note for an allow; "" when none
    where: str  # "file:line"


@dataclass(frozen=True, slots=True)
class Parsed:
    """The entries and the problems of one file."""

    entries: tuple[Entry, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """Every entry of every file, indexed for lookup."""

    entries: Mapping[tuple[KeyKind, str | tuple[int, int, int]], tuple[Entry, ...]]
    # The prefix lengths present, longest first, per IP version: one dict probe each.
    prefixes: Mapping[int, tuple[int, ...]]

    def __len__(self) -> int:
        return sum(len(found) for found in self.entries.values())


EMPTY = Table(MappingProxyType({}), MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Match:
    """The entry that decides, and what it was matched against."""

    entry: Entry
    subject: str  # the client address, client name or sender that matched


# --------------------------------------------------------------------------- parsing


def parse(text: str, source: str) -> Parsed:
    """Parse the text of one access file; ``source`` names it in problems and entries."""
    entries: list[Entry] = []
    problems: list[str] = []
    # split("\n") rather than splitlines(): form feeds and the like must not shift the line
    # numbers the admin is told about.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        result = parse_line(line, where)
        if isinstance(result, str):
            problems.append(f"{where}: {result}")
            continue
        entry, note = result
        if note:
            problems.append(f"{where}: {note}")
        entries.append(entry)
    return Parsed(tuple(entries), tuple(problems))


def parse_line(line: str, where: str) -> tuple[Entry, str] | str:
    """One non-comment line as (entry, warning or ""), or what is wrong with it."""
    if any("\ud800" <= char <= "\udfff" for char in line):
        return "not UTF-8 text"
    fields = line.split(None, 2)
    if len(fields) < 2:
        return f"{printable(fields[0], 80)!r}: missing action (allow or deny)"
    written, word = fields[0], fields[1]
    action = ACTIONS.get(word.lower())
    if action is None:
        return f"{printable(word, 40)!r}: unknown action; expected allow or deny"
    key = parse_key(written)
    if isinstance(key, str):
        return f"{printable(written, 80)!r}: {key}"
    kind, normalised = key
    text, note = _reply_text(fields[2] if len(fields) == 3 else "")
    return Entry(kind, normalised, written, action, text, where), note


def parse_key(text: str) -> tuple[KeyKind, str | tuple[int, int, int]] | str:
    """The kind and normalised form of a key, or why it is not one."""
    if "@" in text:
        return _sender_key(text)
    if ":" in text or all(char in _NUMERIC for char in text):
        return _network_key(text)
    kind, name = (KeyKind.SUBDOMAIN, text[1:]) if text.startswith(".") else (KeyKind.HOST, text)
    reason, domain = _host_name(name)
    return reason if reason else (kind, domain)


def _network_key(text: str) -> tuple[KeyKind, tuple[int, int, int]] | str:
    try:
        network = ipaddress.ip_network(text, strict=False)
        address = ipaddress.ip_interface(text).ip
    except ValueError:
        return "not an IP address or CIDR network"
    if address != network.network_address:
        # Postfix's cidr tables refuse these too: 192.0.2.1/24 is a typo for one or the other.
        return f"host bits set in the network; did you mean {network}?"
    return KeyKind.NETWORK, (network.version, network.prefixlen, int(network.network_address))


def _host_name(text: str) -> tuple[str, str]:
    """("", name) normalised like parse_domain (one trailing dot allowed), or (reason, "")."""
    # Names copied from zone files end in a dot; nothing else is relaxed.
    domain = parse_domain(text.removesuffix("."))
    if not isinstance(domain, Domain):
        return domain.reason, ""
    if domain.name.startswith("["):
        return "address literal; list the client address without brackets", ""
    return "", domain.name


def _sender_key(text: str) -> tuple[KeyKind, str] | str:
    local, _, domain_text = text.rpartition("@")
    domain = ""
    if domain_text.startswith("["):
        return "address literal in a sender key; list the client address instead"
    if domain_text:
        reason, domain = _host_name(domain_text)
        if reason:
            return reason
    elif not local:
        return "empty sender key"
    if not local:
        return KeyKind.DOMAIN, domain
    # The local part follows the mailbox rules; a stand-in domain lets parse_path check it.
    mailbox = parse_path(f"<{local}@{domain or 'example.invalid'}>")
    if not isinstance(mailbox, Mailbox):
        return mailbox.reason
    if not domain:
        return KeyKind.LOCAL_PART, mailbox.local_part.lower()
    return KeyKind.ADDRESS, f"{mailbox.local_part.lower()}@{domain}"


def _reply_text(text: str) -> tuple[str, str]:
    """The TEXT field made safe for an SMTP reply, and a warning when it had to change."""
    if not text:
        return "", ""
    if not text.isascii():
        # A non-ASCII reply makes libmilter's setreply fail, which turns a 5xx into a 4xx.
        return "", "reply text is not ASCII; the default text is used"
    return printable(text, _TEXT_LIMIT), ""


# --------------------------------------------------------------------------- the table


def build(entries: Iterable[Entry]) -> tuple[Table, tuple[str, ...]]:
    """Index ``entries`` for lookup; a key listed twice is reported (both entries are kept)."""
    index: dict[tuple[KeyKind, str | tuple[int, int, int]], list[Entry]] = {}
    problems: list[str] = []
    for entry in entries:
        same = index.setdefault((entry.kind, entry.key), [])
        if same:
            first = same[0]
            clash = "; deny wins" if first.allow != entry.allow else ""
            problems.append(
                f"{entry.where}: {entry.written!r} is also listed at {first.where}{clash}"
            )
        same.append(entry)
    prefixes: dict[int, set[int]] = {4: set(), 6: set()}
    for kind, key in index:
        if kind is KeyKind.NETWORK and isinstance(key, tuple):
            prefixes[key[0]].add(key[1])
    table = Table(
        MappingProxyType({key: tuple(found) for key, found in index.items()}),
        MappingProxyType(
            {v: tuple(sorted(lengths, reverse=True)) for v, lengths in prefixes.items()}
        ),
    )
    return table, tuple(problems)


def _decisive(entries: Sequence[Entry]) -> Entry:
    """Of entries that match equally well (at least one), the deny if any, else the first."""
    return next((entry for entry in entries if not entry.allow), entries[0])


def lookup_address(table: Table, ip: IPAddress | None) -> Match | None:
    """The entry for the client address: the longest matching prefix."""
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1
    bits = ip.max_prefixlen
    value = int(ip)
    for length in table.prefixes.get(ip.version, ()):
        network = value >> (bits - length) << (bits - length)
        found = table.entries.get((KeyKind.NETWORK, (ip.version, length, network)))
        if found:
            return Match(_decisive(found), str(ip))
    return None


def lookup_client_name(table: Table, name: str) -> Match | None:
    """The entry for the client host name: the longest matching suffix."""
    name = name.lower().removesuffix(".")
    # Postfix says "unknown" and Sendmail "[ip]" when the client has no verified name.
    if not name or name == "unknown" or name.startswith("["):
        return None
    labels = name.split(".")
    for start in range(len(labels)):
        suffix = ".".join(labels[start:])
        found = list(table.entries.get((KeyKind.HOST, suffix), ()))
        if start > 0:
            found += table.entries.get((KeyKind.SUBDOMAIN, suffix), ())
        if found:
            return Match(_decisive(found), name)
    return None


def lookup_sender(table: Table, local_part: str, domain: str) -> Match | None:
    """The entry for the sender: the exact address, then ``user@``, then ``@domain``."""
    if not local_part or not domain:
        return None
    local = local_part.lower()
    address = f"{local}@{domain.lower()}"
    for key in (
        (KeyKind.ADDRESS, address),
        (KeyKind.LOCAL_PART, local),
        (KeyKind.DOMAIN, domain.lower()),
    ):
        found = table.entries.get(key)
        if found:
            return Match(_decisive(found), address)
    return None


def lookup(
    table: Table, ip: IPAddress | None, client_name: str, local_part: str, domain: str
) -> Match | None:
    """The deciding entry: client address, else client name, else sender (see the module doc)."""
    return (
        lookup_address(table, ip)
        or lookup_client_name(table, client_name)
        or lookup_sender(table, local_part, domain)
    )
