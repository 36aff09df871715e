"""RFC 5321 / RFC 6531 envelope path parsing for MAIL FROM and RCPT TO arguments.

Everything here is total: for any ``str`` input the public functions return a value and never
raise, because the milter hands them attacker-controlled text straight off the wire.
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass

import idna

__all__ = [
    "AddressError",
    "Domain",
    "Mailbox",
    "NullPath",
    "is_ip_address",
    "parse_domain",
    "parse_path",
    "routing_tricks",
]

# RFC 5321 §4.5.3.1: the limits are in octets, so they are applied to the UTF-8 encoding.
MAX_LOCAL_PART_OCTETS = 64
MAX_DOMAIN_OCTETS = 255
MAX_LABEL_OCTETS = 63
MAX_PATH_OCTETS = 256  # including the angle brackets and any source route

# Cheap pre-check on characters (not octets) so a megabyte of input is refused before any
# per-character work. Generous because surrounding whitespace is tolerated and stripped.
_MAX_INPUT_CHARS = 1024
# routing_tricks() looks at possibly malformed text; SMTP command lines are at most 512 octets
# (RFC 5321 §4.5.3.1.4) and MTAs cap them (Postfix: 2048), so nothing longer reaches a milter.
_MAX_SCAN_CHARS = 4096
_MAX_ERROR_TEXT_CHARS = 300

_LET_DIG = frozenset(string.ascii_letters + string.digits)
_LDH = _LET_DIG | {"-"}
# RFC 5321 atext (via RFC 5322 §3.2.3); RFC 6531 adds every non-ASCII character.
_ATEXT = _LET_DIG | frozenset("!#$%&'*+-/=?^_`{|}~")
_HEX = frozenset(string.hexdigits)
_IPV6_CHARS = _HEX | {":", "."}
_DIGITS = frozenset(string.digits)

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


@dataclass(frozen=True, slots=True)
class AddressError:
    """Why a path was refused; ``text`` is the offending input, truncated for logging."""

    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Domain:
    """A host name (lower-case A-labels) or an address literal (``name`` as written)."""

    name: str
    literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None


def is_ip_address(text: str) -> bool:
    """True when ``text`` is a bare IPv4 or IPv6 address (no brackets), e.g. a sloppy HELO."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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
    return AddressError(text[:_MAX_ERROR_TEXT_CHARS], reason)


def parse_domain(text: str) -> Domain | AddressError:
    """Parse an RFC 5321 Domain or address-literal, such as a HELO argument or an access key.

    Domains follow the same rules as the domain of a mailbox (LDH labels, U-labels converted
    to A-labels, no trailing dot); nothing is stripped. Never raises.
    """
    if not isinstance(text, str):
        return AddressError(f"<{type(text).__name__}>", "not a string")
    reason, result = _parse_domain_or_literal(text)
    if result is not None:
        return result
    return AddressError(text[:_MAX_ERROR_TEXT_CHARS], reason)


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
    if len(text) > _MAX_INPUT_CHARS:
        return "path too long", None
    # Lone surrogates (e.g. from surrogateescape decoding) cannot be UTF-8 encoded; check
    # first so the octet counts below cannot raise.
    if any("\ud800" <= char <= "\udfff" for char in text):
        return "invalid UTF-8", None
    stripped = text.strip(" \t")
    if any(_is_control(char) for char in stripped):
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


def _is_control(char: str) -> bool:
    # C0, DEL and the C1 block: none is allowed by RFC 5321, and RFC 6531 gains nothing from
    # C1 controls except a way to corrupt logs and terminals.
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def _parse_source_route(adl: str) -> tuple[str, ...] | None:
    """Parse an A-d-l ("@a,@b"); address literals are not allowed there (RFC 5321 §4.1.2)."""
    domains: list[str] = []
    for at_domain in adl.split(","):
        if not at_domain.startswith("@"):
            return None
        _, domain = _parse_domain_name(at_domain[1:])
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
        reason, domain, literal = _parse_address_literal(domain_text)
    else:
        reason, domain = _parse_domain_name(domain_text)
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


# --------------------------------------------------------------------------- domains


def _parse_domain_or_literal(text: str) -> tuple[str, Domain | None]:
    """Return ("", domain) on success or (reason, None) on failure."""
    # The same guards as for paths, so the idna code never sees huge or unencodable input.
    if len(text) > _MAX_INPUT_CHARS:
        return "domain too long", None
    if any("\ud800" <= char <= "\udfff" for char in text):
        return "invalid UTF-8", None
    if any(_is_control(char) for char in text):
        return "control character", None
    if text.startswith("["):
        reason, name, literal = _parse_address_literal(text)
    else:
        reason, name = _parse_domain_name(text)
        literal = None
    if name is None:
        return reason, None
    return "", Domain(name, literal)


def _parse_domain_name(text: str) -> tuple[str, str | None]:
    """Validate and normalise a Domain (RFC 5321 sub-domains, RFC 6531 U-labels → A-labels)."""
    if not text:
        return "missing domain", None
    if text.isascii():
        ascii_domain: str | None = text.lower()
    else:
        reason, ascii_domain = _to_a_labels(text)
        if ascii_domain is None:
            return reason, None
    reason = _check_ldh_domain(ascii_domain)
    if reason:
        return reason, None
    return "", ascii_domain


def _to_a_labels(text: str) -> tuple[str, str | None]:
    """Map with UTS 46 and convert U-labels to A-labels (IDNA 2008), label by label.

    Done per label rather than with idna.encode() so that length and empty-label problems
    get the same reasons as for ASCII domains, and so ASCII labels are treated exactly as in
    an all-ASCII domain.
    """
    try:
        # The mapping also lower-cases and turns the ideographic/full-width dots into ".".
        mapped = idna.uts46_remap(text, std3_rules=True)
    except Exception:  # idna raises several types (IDNAError, UnicodeError, ValueError …)
        return "invalid internationalised domain", None
    labels: list[str] = []
    for label in mapped.split("."):
        if not label:
            return "empty label in domain", None
        if label.isascii():
            labels.append(label.lower())
            continue
        try:
            labels.append(idna.alabel(label).decode("ascii"))
        except Exception:  # as above
            return "invalid internationalised domain", None
    return "", ".".join(labels)


def _check_ldh_domain(domain: str) -> str:
    """Return "" if domain is sub-domain *("." sub-domain) in ASCII, else a reason."""
    if len(domain) > MAX_DOMAIN_OCTETS:
        return "domain too long"
    for label in domain.split("."):
        if not label:
            return "empty label in domain"
        if len(label) > MAX_LABEL_OCTETS:
            return "label too long"
        if not all(char in _LDH for char in label):
            return "invalid character in domain"
        # sub-domain = Let-dig [Ldh-str], and Ldh-str ends in Let-dig.
        if label[0] == "-" or label[-1] == "-":
            return "hyphen at start or end of label"
    return ""


# --------------------------------------------------------------------------- address literals


def _parse_address_literal(
    text: str,
) -> tuple[str, str | None, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """Parse "[" ( IPv4 / "IPv6:" IPv6 / Standardized-tag ":" dcontent ) "]".

    The domain returned is the literal as written, brackets included.
    """
    if not text.endswith("]") or len(text) < 2:
        if "]" in text:
            return "text after address literal", None, None
        return "unbalanced bracket in address literal", None, None
    body = text[1:-1]
    if "[" in body or "]" in body:
        return "invalid address literal", None, None

    if ":" not in body:
        ipv4 = _parse_ipv4(body)
        if ipv4 is not None:
            return "", text, ipv4
        if body and all(char in _DIGITS or char == "." for char in body):
            return "invalid IPv4 literal", None, None
        return "invalid address literal", None, None

    tag, _, content = body.partition(":")
    # ABNF strings are case-insensitive, so "ipv6:" is the IPv6 tag too.
    if tag.lower() == "ipv6":
        ipv6 = _parse_ipv6(content)
        if ipv6 is None:
            return "invalid IPv6 literal", None, None
        return "", text, ipv6
    if _is_general_literal(tag, content):
        return "", text, None
    return "invalid address literal", None, None


def _is_general_literal(tag: str, content: str) -> bool:
    """Standardized-tag ":" 1*dcontent, where Standardized-tag is an Ldh-str."""
    if not tag or not all(char in _LDH for char in tag) or tag[-1] == "-":
        return False
    # dcontent = %d33-90 / %d94-126: printable ASCII except "[", "\" and "]".
    return bool(content) and all("!" <= char <= "~" and char not in "[\\]" for char in content)


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """Parse Snum 3("." Snum) with Snum = 1*3DIGIT in 0-255 (leading zeros allowed)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not 1 <= len(part) <= 3 or not all(char in _DIGITS for char in part):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return ipaddress.IPv4Address(value)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address | None:
    """Parse IPv6-full / IPv6-comp / IPv6v4-full / IPv6v4-comp exactly as RFC 5321 §4.1.3.

    Done by hand rather than with ipaddress because RFC 5321 is stricter: "::" must stand for
    at least two zero groups, and zone ids ("%eth0") are not part of the grammar.
    """
    if not text or not all(char in _IPV6_CHARS for char in text):
        return None

    tail_ipv4: ipaddress.IPv4Address | None = None
    if "." in text:
        cut = text.rfind(":")
        if cut < 0:
            return None
        tail_ipv4 = _parse_ipv4(text[cut + 1 :])
        if tail_ipv4 is None:
            return None
        text = text[: cut + 1]
        if not text.endswith("::"):
            text = text[:-1]
    ipv4_groups = 2 if tail_ipv4 is not None else 0

    if ":::" in text or text.count("::") > 1:
        return None
    if "::" in text:
        head, _, tail = text.partition("::")
        head_groups = head.split(":") if head else []
        tail_groups = tail.split(":") if tail else []
        explicit = len(head_groups) + len(tail_groups) + ipv4_groups
        if explicit > 6:
            return None
        groups = head_groups + ["0"] * (8 - explicit) + tail_groups
    else:
        groups = text.split(":") if text else []
        if len(groups) + ipv4_groups != 8:
            return None

    value = 0
    for group in groups:
        # Only hex digits: a dot left before an IPv4 tail ("1.2::1.2.3.4") must fail, not raise.
        if not 1 <= len(group) <= 4 or not all(char in _HEX for char in group):
            return None
        value = value << 16 | int(group, 16)
    if tail_ipv4 is not None:
        value = value << 32 | int(tail_ipv4)
    return ipaddress.IPv6Address(value)


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
