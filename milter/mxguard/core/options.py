"""Option value types and the ``option()`` field helper used by every settings class.

A settings class is a frozen dataclass whose fields are declared with :func:`option`; the field
carries its INI default text, its value type and a one-line doc. ``config.py`` reads the INI
through these fields, and renders ``contrib/mxguard.ini`` and the README reference from them, so
the defaults live in exactly one place.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import idna

from mxguard.core.errors import ValueParseError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Mode(enum.StrEnum):
    """Whether a check may refuse mail, or only log and tag what it would have done."""

    ENFORCE = "enforce"
    MONITOR = "monitor"


@dataclass(frozen=True, slots=True)
class ValueType:
    """How one kind of option value is parsed from INI text and written back."""

    name: str
    expected: str
    parse: Callable[[str], Any]
    format: Callable[[Any], str] = str


_TRUE = frozenset({"yes", "true", "on", "1"})
_FALSE = frozenset({"no", "false", "off", "0"})


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueParseError


def _parse_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueParseError from None
    if value < 0:
        raise ValueParseError
    return value


def _parse_seconds(text: str) -> float:
    """Parse a positive number of seconds, with an optional s/m/h/d unit."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise ValueParseError
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if value <= 0:
        raise ValueParseError
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _format_seconds(value: float) -> str:
    for unit in ("d", "h", "m"):
        if value >= _UNITS[unit] and value % _UNITS[unit] == 0:
            return f"{int(value // _UNITS[unit])}{unit}"
    return f"{value:g}s"


def split_list(text: str) -> list[str]:
    """The non-empty items of a comma-separated value, stripped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_network(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueParseError(text) from None


def _parse_networks(text: str) -> tuple[IPNetwork, ...]:
    return tuple(_parse_network(item) for item in split_list(text))


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def parse_domain_name(text: str) -> str:
    """Normalise a domain name to lower-case A-labels without a trailing dot."""
    name = text.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise ValueParseError(text) from None
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueParseError(text)
    return name


def _parse_domains(text: str) -> tuple[str, ...]:
    return tuple(parse_domain_name(item) for item in split_list(text))


def _parse_words(text: str) -> tuple[str, ...]:
    return tuple(split_list(text))


def _parse_nameserver(text: str) -> tuple[str, int]:
    """Parse ``host``, ``host:port`` or ``[v6]:port`` into an (address, port) pair."""
    text = text.strip()
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", text)
    if match:
        host, port = match.group(1), match.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueParseError(text) from None
    number = int(port) if port and port.isdigit() else 53
    if port is not None and not (port.isdigit() and 0 < number < 65536):
        raise ValueParseError(text)
    return str(address), number


def _format_nameserver(value: tuple[str, int]) -> str:
    host, port = value
    if port == 53:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_path(text: str) -> str:
    """A file path as written (empty: none); the NUL byte no file name can hold is refused."""
    path = text.strip()
    if "\x00" in path:
        raise ValueParseError(text)
    # A lone surrogate cannot be encoded for the file system: open() and stat() would raise
    # UnicodeEncodeError where the loader expects OSError (the [dkim_sign] key_table did).
    if any("\ud800" <= char <= "\udfff" for char in path):
        raise ValueParseError(text)
    return path


def _parse_paths(text: str) -> tuple[str, ...]:
    return tuple(_parse_path(item) for item in split_list(text))


def _parse_socket(text: str) -> str:
    """Accept libmilter's socket forms: unix:/path, local:/path, inet:port@host, inet6:port@host."""
    text = text.strip()
    if re.fullmatch(r"(unix|local):/\S+", text):
        return text
    match = re.fullmatch(r"(inet6?):(\d+)(?:@(\S+))?", text)
    if match and 0 < int(match.group(2)) < 65536:
        if match.group(3) is None:  # no address: loopback, never every interface
            return f"{text}@{'[::1]' if match.group(1) == 'inet6' else '127.0.0.1'}"
        return text
    raise ValueParseError(text)


def joined(format_item: Callable[[Any], str]) -> Callable[[Any], str]:
    """A formatter that writes a sequence back as a comma-separated value."""
    return lambda values: ", ".join(format_item(item) for item in values)


BOOL = ValueType(
    "boolean", "yes/no/true/false/on/off/1/0", _parse_bool, lambda v: "yes" if v else "no"
)
INT = ValueType("integer", "a whole number (0 or more)", _parse_int)
DURATION = ValueType(
    "duration", "a duration such as 3s, 1.5s, 5m, 2h or 7d", _parse_seconds, _format_seconds
)
STRING = ValueType("string", "text", str.strip)
WORDS = ValueType("list", "a comma-separated list", _parse_words, joined(str))
SECRETS = ValueType(
    "secret list",
    "a comma-separated list of secrets",
    _parse_words,
    # check-config prints the effective settings; secrets must not end up in terminals and logs.
    lambda values: f"({len(values)} hidden)" if values else "",
)
DOMAINS = ValueType(
    "domain list", "a comma-separated list of domain names", _parse_domains, joined(str)
)
NETWORKS = ValueType(
    "network list",
    "a comma-separated list of IPv4/IPv6 addresses or CIDR networks",
    _parse_networks,
    joined(str),
)
NAMESERVERS = ValueType(
    "nameserver list",
    "a comma-separated list of IP addresses, each optionally with :port ([v6]:port)",
    lambda text: tuple(_parse_nameserver(item) for item in split_list(text)),
    joined(_format_nameserver),
)
# Data files that a check reads at start and again on reload: after the privilege drop, so
# startup checks that the milter user can read them (see readability.unreadable_files).
PATH = ValueType("path", "a file path (empty: none)", _parse_path)
PATHS = ValueType("path list", "a comma-separated list of file paths", _parse_paths, joined(str))
SOCKET = ValueType(
    "socket", "unix:/path/to/socket, or inet:PORT@HOST (without @HOST: loopback)", _parse_socket
)


def choice(*words: str) -> ValueType:
    """A value type that accepts exactly one of ``words``."""

    def parse(text: str) -> str:
        word = text.strip().lower()
        if word not in words:
            raise ValueParseError(text)
        return word

    return ValueType("choice", "one of " + ", ".join(words), parse)


class Severity(enum.StrEnum):
    """What a check does with what it found: nothing, a tag, or a refusal."""

    OFF = "off"
    TAG = "tag"
    REJECT = "reject"


SEVERITY = ValueType(
    "severity",
    "one of off, tag, reject",
    lambda text: Severity(choice(*Severity).parse(text)),
)

MODE = ValueType(
    "mode", "enforce or monitor", lambda text: Mode(choice("enforce", "monitor").parse(text))
)
INHERITED_MODE = ValueType(
    "mode",
    "enforce or monitor (empty: the [milter] mode)",
    lambda text: MODE.parse(text) if text.strip() else None,
    lambda v: "" if v is None else str(v),
)


def option(default: str, doc: str, kind: ValueType, *, restart: bool = False) -> Any:
    """Declare a settings field: its INI default text, its one-line doc and its value type;
    ``restart`` for one that a reload cannot change (the socket, the user)."""
    return dataclasses.field(
        default=kind.parse(default),
        metadata={"default_text": default, "doc": doc, "kind": kind, "restart": restart},
    )


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option of a section, as read from a settings class."""

    name: str
    default_text: str
    doc: str
    kind: ValueType
    restart: bool = False

    @property
    def described(self) -> str:
        """The doc as the generated references print it."""
        return self.doc + ("; takes effect at restart, not on reload" if self.restart else "")


def specs(settings_class: type) -> list[OptionSpec]:
    """The options a settings class declares, in declaration order."""
    return [
        OptionSpec(
            f.name,
            f.metadata["default_text"],
            f.metadata["doc"],
            f.metadata["kind"],
            f.metadata.get("restart", False),
        )
        for f in dataclasses.fields(settings_class)
        if "kind" in f.metadata
    ]


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """Options every check section has."""

    enabled: bool = option("yes", "run this check", BOOL)
    mode: Mode | None = option(
        "", "enforce or monitor; empty means the [milter] mode", INHERITED_MODE
    )

    @property
    def monitor(self) -> bool:
        """True when the check must only log and tag, never refuse."""
        return self.mode is Mode.MONITOR
