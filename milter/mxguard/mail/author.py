"""The RFC 5322 author: the one mailbox of the header From, as DMARC (RFC 7489) sees it.

DMARC judges the domain a reader sees in From, so a From field that readers and verifiers
could read differently is itself the attack (the OpenDMARC "first address wins" class: two
addresses, two angle-addrs, a group, an unterminated quote). Such a field is not guessed at:
it comes back as a short problem text. The parser follows RFC 5322 section 3.4 with the
obsolete forms receivers must accept (dots in display names, CFWS around dots, empty list
members), RFC 6532 UTF-8, and refuses source routes, groups and control characters.

Everything here is total: any text in, an ``Author`` or a problem text out, never an exception.
"""

from __future__ import annotations

import functools
import itertools
import re
import string
import unicodedata
from dataclasses import dataclass

import idna

from mxguard.core.facts import Message

__all__ = ["NO_FIELD", "Author", "author", "normalise_domain"]

NO_FIELD = "no From field"
SEVERAL_FIELDS = "several From fields"
SEVERAL_ADDRESSES = "several addresses in From"
UNPARSABLE = "From does not parse"
NO_DOMAIN = "From has no domain"


@dataclass(frozen=True, slots=True)
class Author:
    """The single mailbox of From: ``address`` as written (addr-spec, no comments or white
    space), ``domain`` normalised (lower-case A-labels, no trailing dot)."""

    address: str
    domain: str


_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_WSP = frozenset(" \t\r\n")  # the MTA hands folded fields over with their line breaks
_SPECIALS = frozenset("<>@,.:;")
_LABEL = re.compile(r"[a-z0-9_-]{1,63}\Z")


def _bad_char(char: str) -> bool:
    """Controls (NUL included), lone surrogates, and U+FFFD: the field held bytes that were
    not UTF-8, so what the reader's software shows is anybody's guess."""
    if char in _WSP:
        return False
    if char < " " or char == "\x7f" or char == "\ufffd":
        return True
    return not char.isascii() and unicodedata.category(char) in ("Cc", "Cs")


def _is_atext(char: str) -> bool:
    # RFC 6532 adds every non-ASCII character to atext; the bad ones were refused up front.
    return char in _ATEXT or not char.isascii()


def _end_of_quoted(text: str, start: int) -> int:
    """The index after the quoted-string opening at ``start``, or -1 if it is unterminated."""
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            return i + 1
        i += 1
    return -1


def _end_of_comment(text: str, start: int) -> int:
    """The index after the (possibly nested) comment opening at ``start``, or -1."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _end_of_literal(text: str, start: int) -> int:
    """The index after the domain-literal opening at ``start``, or -1."""
    end = text.find("]", start + 1)
    if end < 0 or any(c in "[\\" for c in text[start + 1 : end]):
        return -1
    return end + 1


Token = tuple[str, str]  # (kind, text): kind is "atom", "quoted", "literal" or the special


def _tokens(text: str) -> list[Token] | None:
    """The field value as RFC 5322 lexical tokens, comments and folding white space dropped;
    None when it cannot be tokenised (unbalanced quotes, comments, brackets; stray ``\\``)."""
    tokens: list[Token] = []
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        if char in _WSP:
            i += 1
        elif char == "(":
            end = _end_of_comment(text, i)
            if end < 0:
                return None
            i = end
        elif char in '"[':
            end = _end_of_quoted(text, i) if char == '"' else _end_of_literal(text, i)
            if end < 0:
                return None
            tokens.append(("quoted" if char == '"' else "literal", text[i:end]))
            i = end
        elif char in _SPECIALS:
            tokens.append((char, char))
            i += 1
        elif _is_atext(char):
            end = i + 1
            while end < size and _is_atext(text[end]):
                end += 1
            tokens.append(("atom", text[i:end]))
            i = end
        else:  # ")", "]", "\" outside a quoted-string or comment
            return None
    return tokens


def _is_dot_atom(tokens: list[Token]) -> bool:
    """True for ``atom *("." atom)`` (CFWS around the dots, obs-domain, already dropped)."""
    if len(tokens) % 2 == 0:
        return False
    atoms_ok = all(kind == "atom" for kind, _ in tokens[0::2])
    return atoms_ok and all(kind == "." for kind, _ in tokens[1::2])


def _is_local_part(tokens: list[Token]) -> bool:
    """Words joined by dots. Empty words are let through ("first.@docomo.ne.jp" is a real,
    if invalid, address): the local part cannot change whose domain it is, and two words
    with no dot between them still fail (that is a display name without angle brackets)."""
    words = [kind != "." for kind, _ in tokens]
    adjacent = any(a and b for a, b in itertools.pairwise(words))
    return any(words) and not adjacent


def _is_phrase(tokens: list[Token]) -> bool:
    """A display name: words, with the dots of obs-phrase ("John Q. Public") after the first."""
    if not tokens or tokens[0][0] not in ("atom", "quoted"):
        return False
    return all(kind in ("atom", "quoted", ".") for kind, _ in tokens)


def normalise_domain(text: str) -> str | None:
    """``text`` as lower-case A-labels without the trailing dot, or None when it is not a
    usable domain name; U-labels go through UTS 46, and IDNA 2003 when that refuses them."""
    name = text[:-1] if text.endswith(".") else text
    name = name.lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            # IDNA 2008 refuses symbols and some mappings that are registered and resolve
            # (they predate it); the older IDNA 2003 encoding still names them.
            try:
                name = name.encode("idna").decode("ascii").lower()
            except (UnicodeError, ValueError):
                return None
    if not name or len(name) > 253:
        return None
    return name if all(_LABEL.match(label) for label in name.split(".")) else None


def _addr_spec(tokens: list[Token]) -> Author | str:
    """An addr-spec from its tokens (no comments), or a problem text."""
    ats = [i for i, (kind, _) in enumerate(tokens) if kind == "@"]
    if not ats:
        local_only = _is_local_part(tokens)
        return NO_DOMAIN if local_only else UNPARSABLE
    if len(ats) > 1:
        return UNPARSABLE
    local, domain = tokens[: ats[0]], tokens[ats[0] + 1 :]
    if not _is_local_part(local):
        return UNPARSABLE
    if len(domain) == 1 and domain[0][0] == "literal":
        return NO_DOMAIN  # an address literal names a host, not a domain with a policy
    written = "".join(text for _, text in domain)
    if domain and domain[-1][0] == ".":
        domain = domain[:-1]  # the absolute form, example.org.
    if not domain or not _is_dot_atom(domain):
        return UNPARSABLE
    normalised = normalise_domain(written)
    if normalised is None:
        return UNPARSABLE
    return Author("".join(text for _, text in local) + "@" + written, normalised)


def _mailbox(tokens: list[Token]) -> Author | str:
    """One mailbox (name-addr or addr-spec) from its tokens, or a problem text."""
    kinds = [kind for kind, _ in tokens]
    if "<" not in kinds and ">" not in kinds:
        return _addr_spec(tokens)
    if kinds.count("<") != 1 or kinds.count(">") != 1 or kinds[-1] != ">":
        return UNPARSABLE
    opening = kinds.index("<")
    name, inner = tokens[:opening], tokens[opening + 1 : -1]
    if name and not _is_phrase(name):
        return UNPARSABLE
    if not inner or inner[0][0] == "@":
        return UNPARSABLE  # <> is no mailbox; <@route:...> is an obsolete source route
    return _addr_spec(inner)


# The dmarc and spoof checks both ask for the author of each message, and a mailing list's or
# a newsletter's From repeats from message to message; the parse is pure, so it is memoised.
@functools.lru_cache(maxsize=4096)
def _parse_from(value: str) -> Author | str:
    """The one mailbox of a From field value, or a problem text."""
    if any(_bad_char(char) for char in value):
        return UNPARSABLE
    tokens = _tokens(value)
    if tokens is None or any(kind in (":", ";") for kind, _ in tokens):
        return UNPARSABLE  # From holds a mailbox-list: a group is not allowed there
    members: list[list[Token]] = [[]]
    for token in tokens:
        if token[0] == ",":
            members.append([])
        else:
            members[-1].append(token)
    # obs-mbox-list allows empty members ("a@example.org,"); they name nobody.
    found = [_mailbox(member) for member in members if member]
    if not found:
        return UNPARSABLE
    if len(found) > 1:
        every_one = all(isinstance(item, Author) for item in found)
        return SEVERAL_ADDRESSES if every_one else UNPARSABLE
    return found[0]


def author(message: Message) -> Author | str:
    """The one author of the message, or a short problem text: 'no From field', 'several From
    fields', 'several addresses in From', 'From does not parse', 'From has no domain'."""
    values = message.values("From")
    if not values:
        return NO_FIELD
    if len(values) > 1:
        return SEVERAL_FIELDS
    return _parse_from(values[0])
