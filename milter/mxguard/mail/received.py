"""A tolerant parser of Received header fields (RFC 5321 section 4.4, RFC 5322 section 3.6.7).

Real MTAs do not follow the grammar: Postfix and Sendmail put the HELO name first and the
client's reverse DNS name and address in a comment (``from helo (rdns [192.0.2.1])``); Exim and
qmail put the address or the verified name first and the HELO in the comment
(``from [192.0.2.1] (helo=foo)``, ``from unknown (HELO foo) (192.0.2.1)``); Exchange writes a
bare address in parentheses; Gmail writes ``by 2002:a05:...`` without any from clause. The
parser reads the clauses ``from``, ``by``, ``via``, ``with``, ``id`` and ``for`` in any order,
takes the first word after each keyword as its value, and reads the date from the text after
the last ``;`` that is not inside a comment.

It never raises and runs in linear time: the scanner uses only possessive regular expressions
and visits each character a bounded number of times, so a hostile megabyte-long field costs
milliseconds, not minutes.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mxguard.core.facts import IPAddress, normalise_ip

__all__ = ["Hop", "parse"]


@dataclass(frozen=True, slots=True)
class Hop:
    """One Received field: who handed the message to whom, how, and when.

    ``from_name`` is the name the client gave in HELO where the field says which that is
    (``helo=``, ``(HELO x)``), else the first word of the from clause. ``from_rdns`` is the
    client's reverse DNS name as the receiving MTA found it (trailing dot removed; empty for
    ``unknown``). ``from_ip`` is the client's address from the same information (IPv4-mapped
    addresses as IPv4, without an IPv6 zone). Empty strings and None mean "not given".
    """

    from_name: str = ""
    from_rdns: str = ""
    from_ip: IPAddress | None = None
    by: str = ""
    with_: str = ""
    id: str = ""
    for_: str = ""
    date: datetime | None = None


_WORD, _COMMENT, _SEMICOLON = 0, 1, 2
_Token = tuple[int, str]

# One match per token: the white space before it, then a word, a run of semicolons or an
# opening parenthesis. Control characters (NUL included) count as white space: they are never
# part of a name anybody meant, and as text they would glue clauses together. A stray closing
# parenthesis says nothing and is skipped with the space.
_NEXT = re.compile(r"[\s\x00-\x1f\x7f)]*+(?:([^\s\x00-\x1f\x7f();]++)|(;++)|(\())?")
# Inside a comment: the text up to the next run of parentheses, quoted-pairs included; a run
# moves the nesting depth in one step, so "((((..." costs one match.
_COMMENT_TEXT = re.compile(r"(?:[^()\\]++|\\.?)*+(?:(\(++)|(\)++))?", re.DOTALL)
# Real fields have a few dozen tokens; this many means junk, and bounds the Python-level work
# (the regular expressions are linear, but a loop turn per token of a megabyte is not cheap).
_MAX_STEPS = 2000

_KEYWORDS = frozenset({"from", "by", "via", "with", "id", "for"})
_HELO_WORDS = frozenset({"helo", "ehlo"})
# A date-time is about 31 characters; longer "dates" are junk, not worth handing to email.utils.
_MAX_DATE = 200
# Longer than any address literal, zone and port included.
_MAX_ADDRESS = 100


_ADDRESS_CHARS = re.compile(r"[0-9A-Fa-f.:]+")


class _TooComplex(Exception):
    """More structure than any MTA writes: the field is junk."""


class _Scanner:
    """Splits field text into tokens, within one budget of steps for the whole field."""

    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps = 0

    def _step(self) -> None:
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise _TooComplex

    def comment_end(self, text: str, start: int) -> tuple[int, bool]:
        """Where the comment opening at ``start`` ends, and whether it was closed at all."""
        depth = 0
        position = start
        while True:
            self._step()
            match = _COMMENT_TEXT.match(text, position)
            assert match is not None  # every part of the pattern may be empty
            opening, closing = match.group(1), match.group(2)
            if opening is not None:
                depth += len(opening)
            elif closing is not None:
                if len(closing) >= depth:
                    return match.start(2) + depth, True
                depth -= len(closing)
            else:
                return len(text), False  # unclosed: it runs to the end of the field
            position = match.end()

    def tokens(self, text: str) -> tuple[list[_Token], int]:
        """Words, comments (their inner text) and semicolons; and the last semicolon's index."""
        tokens: list[_Token] = []
        last_semicolon = -1
        position, end = 0, len(text)
        while position < end:
            self._step()
            match = _NEXT.match(text, position)
            assert match is not None  # every part of the pattern may be empty
            word, semicolons, opening = match.groups()
            if word is not None:
                tokens.append((_WORD, word))
                position = match.end()
            elif semicolons is not None:
                last_semicolon = len(tokens)
                tokens.append((_SEMICOLON, ";"))
                position = match.end()
            elif opening is not None:
                close, closed = self.comment_end(text, match.start(3))
                tokens.append((_COMMENT, text[match.end() : close - 1 if closed else close]))
                position = close
            else:
                break  # only white space was left
        return tokens, last_semicolon


def _address(word: str) -> IPAddress | None:
    """The IP address in ``[192.0.2.1]``, ``[IPv6:2001:db8::1]``, ``[ip]:port``, ``user@ip`` or
    a bare address; None when the word holds none."""
    if len(word) > _MAX_ADDRESS:
        return None
    if word.startswith("["):
        text = word[1:].partition("]")[0]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    else:
        text = word.rpartition("@")[2]  # qmail and Sendmail write an ident user before it
    # Exchange writes link-local addresses with a zone (fe80::1%4): meaningless to us.
    text = text.partition("%")[0]
    if not _ADDRESS_CHARS.fullmatch(text):
        return None  # most words are names: ipaddress would raise twice (v4, v6) to say so
    try:
        return normalise_ip(ipaddress.ip_address(text))
    except ValueError:
        return None


def _host_name(word: str) -> str:
    """A reverse DNS name as written in TCP information: no ident user, no trailing dot."""
    name = word.rpartition("@")[2].rstrip(".")
    if name.lower() == "unknown" or "=" in name or name.startswith("[") or _address(name):
        return ""
    return name


def _from_clause(
    scanner: _Scanner, first: str, comments: list[str]
) -> tuple[str, str, IPAddress | None]:
    """The HELO name, reverse DNS name and address of a from clause."""
    helo: str | None = None
    rdns = ""
    ip: IPAddress | None = None
    for comment in comments:
        # Only the comment's own words: not those of comments nested in it ("may be forged").
        words = [text for kind, text in scanner.tokens(comment)[0] if kind == _WORD]
        index = 0
        while index < len(words):
            word = words[index]
            lowered = word.lower()
            if lowered in _HELO_WORDS and index + 1 < len(words):
                if helo is None:
                    helo = words[index + 1]
                index += 2  # the HELO argument is the client's claim, not its address
                continue
            if lowered[:5] in ("helo=", "ehlo="):
                if helo is None:
                    helo = word[5:]
            elif ip is None:
                found = _address(word)
                if found is not None:
                    ip = found
                    # Sendmail and Postfix write "rdns [ip]" with the name just before.
                    if index > 0:
                        rdns = _host_name(words[index - 1])
            index += 1
    if helo is None:
        return first, rdns, ip
    # With the HELO named in the comment, the first word is what the MTA found for the
    # connection itself: Exim's "[ip]" or verified name, qmail's TCPREMOTEHOST or "unknown".
    if ip is None and first.startswith("["):
        ip = _address(first)
    return helo, rdns or _host_name(first), ip


def _date(tokens: list[_Token]) -> datetime | None:
    """The date-time in the tokens after the last semicolon, as an aware datetime."""
    text = " ".join(text for kind, text in tokens if kind == _WORD)  # "(UTC)" and such dropped
    if not text or len(text) > _MAX_DATE:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except Exception:
        # email.utils raises ValueError, TypeError, IndexError or OverflowError on different
        # kinds of junk depending on the Python version; any of them means "no date".
        return None
    # "-0000" means "time zone unknown" (RFC 5322 section 3.3): take it as UTC.
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse(value: str) -> Hop | None:
    """The hop a Received field value describes; None when it has no clause and no date, or
    is far too complex to be one an MTA wrote."""
    try:
        return _parse(value)
    except _TooComplex:
        return None


def _parse(value: str) -> Hop | None:
    scanner = _Scanner()
    tokens, last_semicolon = scanner.tokens(value)
    date = None
    if last_semicolon >= 0:
        date = _date(tokens[last_semicolon + 1 :])
        tokens = tokens[:last_semicolon]
    values: dict[str, str] = {}
    opened: set[str] = set()
    from_comments: list[str] = []
    keyword = ""  # the clause being read; "" before the first, "-" for a repeated one
    waiting = False  # the clause's value has not come yet
    for kind, text in tokens:
        if kind == _COMMENT:
            if keyword == "from":
                from_comments.append(text)
        elif kind == _WORD:
            if waiting:
                values[keyword] = text
                waiting = False
            elif len(text) <= 4 and text.lower() in _KEYWORDS:
                lowered = text.lower()
                # The first clause of each kind counts; a repeated one is read and dropped.
                keyword = "-" if lowered in opened else lowered
                opened.add(lowered)
                waiting = True
    values.pop("-", None)
    if not values and date is None:
        return None
    from_name, from_rdns, from_ip = "", "", None
    if "from" in values:
        from_name, from_rdns, from_ip = _from_clause(scanner, values["from"], from_comments)
    return Hop(
        from_name=from_name,
        from_rdns=from_rdns,
        from_ip=from_ip,
        by=values.get("by", ""),
        with_=values.get("with", ""),
        id=values.get("id", ""),
        for_=values.get("for", "").strip("<>"),
        date=date,
    )
