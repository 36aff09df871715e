"""RFC 5321 / RFC 6531 envelope path parsing for MAIL FROM and RCPT TO arguments.

Everything here is total: for any ``str`` input the public functions return a value and never
raise, because the milter hands them attacker-controlled text straight off the wire. Domains
and address literals are parsed by domain_name and address_literal, and the refusal type is
in address_error.
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass

from mxguard.mail.address_error import (
    MAX_ERROR_TEXT_CHARS,
    MAX_INPUT_CHARS,
    AddressError,
    is_control,
)
from mxguard.mail.address_literal import parse_address_literal
from mxguard.mail.domain_name import parse_domain_name

__all__ = [
    "Mailbox",
    "NullPath",
    "parse_path",
    "routing_tricks",
]

# RFC 5321 §4.5.3.1: the limits are in octets, so they are applied to the UTF-8 encoding.
MAX_LOCAL_PART_OCTETS = 64
MAX_PATH_OCTETS = 256  # including the angle brackets and any source route

# routing_tricks() looks at possibly malformed text; SMTP command lines are at most 512 octets
# (RFC 5321 §4.5.3.1.4) and MTAs cap them (Postfix: 2048), so nothing longer reaches a milter.
_MAX_SCAN_CHARS = 4096

# RFC 5321 atext (via RFC 5322 §3.2.3); RFC 6531 adds every non-ASCII character.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")

# Ids returned by routing_tricks(), in the fixed order they are reported.
TRICK_SOURCE_ROUTE = "source-route"
TRICK_PERCENT_HACK = "percent-hack"
TRICK_BANG_PATH = "bang-path"
TRICK_QUOTED_ROUTE = "quoted-route"
TRICK_MULTIPLE_AT = "multiple-at"
_TRICK_ORDER = (
    TRICK_SOURCE_ROUTE,
    TRICK_PERCENT_HACK,
    TRICK_BANG_PATH,
    TRICK_QUOTED_ROUTE,
    TRICK_MULTIPLE_AT,
)


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A syntactically valid RFC 5321 mailbox, with its domain normalised for comparison."""

    local_part: str
    domain: str
    quoted: bool
    literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    source_route: tuple[str, ...]
    utf8: bool

    @property
    def address(self) -> str:
        """The mailbox as ``local@domain``, quoting the local part only when it needs it."""
        local = _render_local_part(self.local_part)
        return f"{local}@{self.domain}" if self.domain else local


@dataclass(frozen=True, slots=True)
class NullPath:
    """The null reverse path ``<>`` (bounces and other auto-generated mail)."""


def parse_path(
    text: str, *, allow_null: bool = False, allow_bare_postmaster: bool = True
) -> Mailbox | NullPath | AddressError:
    """Parse a MAIL FROM / RCPT TO argument (angle brackets optional) per RFC 5321 and 6531.

    Never raises; anything unusable comes back as an AddressError.
    """
    if not isinstance(text, str):
        return AddressError(f"<{type(text).__name__}>", "not a string")
    reason, result = _parse(
        text, allow_null=allow_null, allow_bare_postmaster=allow_bare_postmaster
    )
    if result is not None:
        return result
    return AddressError(text[:MAX_ERROR_TEXT_CHARS], reason)


def routing_tricks(text: str) -> tuple[str, ...]:
    """Name the relay tricks (percent hack, bang path, source route, …) a recipient uses.

    Purely lexical and quote-aware, so it also works on paths parse_path() rejects.
    """
    if not isinstance(text, str):
        return ()
    body = _strip_brackets(text[:_MAX_SCAN_CHARS].strip(" \t"))
    found: set[str] = set()

    if body.startswith("@"):
        colon = body.find(":")
        if colon > 0:
            found.add(TRICK_SOURCE_ROUTE)
            body = body[colon + 1 :]

    segments = _lex_quoting(body)
    at_positions = [
        index for index, (quoted, char) in enumerate(segments) if char == "@" and not quoted
    ]
    if len(at_positions) > 1:
        found.add(TRICK_MULTIPLE_AT)
    # With several "@" any of them could be taken as the separator; judging everything before
    # the last one as local part flags the widest reading.
    local_end = at_positions[-1] if at_positions else len(segments)
    for quoted, char in segments[:local_end]:
        if quoted and char in "@%!":
            found.add(TRICK_QUOTED_ROUTE)
        elif not quoted and char == "%":
            found.add(TRICK_PERCENT_HACK)
        elif not quoted and char == "!":
            found.add(TRICK_BANG_PATH)
    return tuple(trick for trick in _TRICK_ORDER if trick in found)


# --------------------------------------------------------------------------- path level


def _parse(
    text: str, *, allow_null: bool, allow_bare_postmaster: bool
) -> tuple[str, Mailbox | NullPath | None]:
    """Return ("", result) on success or (reason, None) on failure."""
    if len(text) > MAX_INPUT_CHARS:
        return "path too long", None
    # Lone surrogates (e.g. from surrogateescape decoding) cannot be UTF-8 encoded; check
    # first so the octet counts below cannot raise.
    if any("\ud800" <= char <= "\udfff" for char in text):
        return "invalid UTF-8", None
    stripped = text.strip(" \t")
    if any(is_control(char) for char in stripped):
        return "control character", None

    bracketed = stripped.startswith("<")
    if bracketed != stripped.endswith(">"):
        return "unbalanced angle bracket", None
    inner = stripped[1:-1] if bracketed else stripped

    if len(inner.encode("utf-8")) + 2 > MAX_PATH_OCTETS:
        return "path too long", None
    if not inner:
        if not bracketed:
            return "empty path", None
        if allow_null:
            return "", NullPath()
        return "null path not allowed", None

    source_route: tuple[str, ...] = ()
    mailbox_text = inner
    if inner.startswith("@"):
        colon = inner.find(":")
        if colon < 0:
            return "missing local part", None
        source_route_or_none = _parse_source_route(inner[:colon])
        if source_route_or_none is None:
            return "invalid source route", None
        source_route = source_route_or_none
        mailbox_text = inner[colon + 1 :]

    return _parse_mailbox(
        mailbox_text,
        source_route=source_route,
        utf8=not inner.isascii(),
        allow_bare_postmaster=allow_bare_postmaster,
    )


def _strip_brackets(text: str) -> str:
    """Drop one leading "<" and one trailing ">" if present, each independently."""
    if text.startswith("<"):
        text = text[1:]
    if text.endswith(">"):
        text = text[:-1]
    return text


def _parse_source_route(adl: str) -> tuple[str, ...] | None:
    """Parse an A-d-l ("@a,@b"); address literals are not allowed there (RFC 5321 §4.1.2)."""
    domains: list[str] = []
    for at_domain in adl.split(","):
        if not at_domain.startswith("@"):
            return None
        _, domain = parse_domain_name(at_domain[1:])
        if domain is None:
            return None
        domains.append(domain)
    return tuple(domains)


# --------------------------------------------------------------------------- mailbox


def _parse_mailbox(
    text: str, *, source_route: tuple[str, ...], utf8: bool, allow_bare_postmaster: bool
) -> tuple[str, Mailbox | None]:
    """Parse Local-part "@" ( Domain / address-literal ), or the bare <postmaster> form."""
    if not text:
        return "missing local part", None

    if text.startswith('"'):
        reason, quoted_end, local_part = _scan_quoted_string(text)
        if local_part is None:
            return reason, None
        raw_local = text[:quoted_end]
        rest = text[quoted_end:]
        if rest and not rest.startswith("@"):
            return "text after quoted string", None
        quoted = True
    else:
        at = text.find("@")
        raw_local = text if at < 0 else text[:at]
        rest = "" if at < 0 else text[at:]
        if at < 0:
            if allow_bare_postmaster and not source_route and raw_local.lower() == "postmaster":
                return "", Mailbox(raw_local, "", False, None, (), utf8)
            return "missing domain", None
        reason = _check_dot_string(raw_local)
        if reason:
            return reason, None
        local_part = raw_local
        quoted = False

    if len(raw_local.encode("utf-8")) > MAX_LOCAL_PART_OCTETS:
        return "local part too long", None
    if not rest or rest == "@":
        return "missing domain", None

    domain_text = rest[1:]
    if domain_text.startswith("["):
        reason, domain, literal = parse_address_literal(domain_text)
    else:
        reason, domain = parse_domain_name(domain_text)
        literal = None
    if domain is None:
        return reason, None
    return "", Mailbox(local_part, domain, quoted, literal, source_route, utf8)


def _scan_quoted_string(text: str) -> tuple[str, int, str | None]:
    """Scan a Quoted-string at the start of text; return (reason, end index, unescaped content).

    qtextSMTP is %d32-33 / %d35-91 / %d93-126 plus non-ASCII (RFC 6531); quoted-pairSMTP is
    a backslash followed by %d32-126 only. Control characters were rejected earlier.
    """
    content: list[str] = []
    index = 1
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            return "", index + 1, "".join(content)
        if char == "\\":
            if index + 1 >= length:
                return "unbalanced quote", index, None
            escaped = text[index + 1]
            if not " " <= escaped <= "~":
                return "invalid quoted-pair", index, None
            content.append(escaped)
            index += 2
            continue
        content.append(char)
        index += 1
    return "unbalanced quote", index, None


def _check_dot_string(local: str) -> str:
    """Return "" if local is an RFC 5321 Dot-string (RFC 6531 atext), else a reason."""
    if not local:
        return "missing local part"
    if local.startswith(".") or local.endswith("."):
        return "dot at start or end of local part"
    if ".." in local:
        return "consecutive dots in local part"
    if not all(char in _ATEXT or char == "." or not char.isascii() for char in local):
        return "invalid character in local part"
    return ""


def _is_dot_string(local: str) -> bool:
    return not _check_dot_string(local)


def _render_local_part(local: str) -> str:
    """Emit local unchanged if it is a Dot-string, else as a minimal Quoted-string."""
    if _is_dot_string(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --------------------------------------------------------------------------- lexing


def _lex_quoting(text: str) -> list[tuple[bool, str]]:
    """Pair every significant character with whether it is quoted.

    Inside "..." everything is quoted and a backslash quotes the next character; outside, a
    backslash still quotes the next one, as sendmail treats it. Quote marks and the quoting
    backslashes themselves are dropped. An unclosed quote runs to the end.
    """
    result: list[tuple[bool, str]] = []
    in_quotes = False
    escaped = False
    for char in text:
        if escaped:
            result.append((True, char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        else:
            result.append((in_quotes, char))
    return result
