"""Reverse DNS names of consumer lines (dynamic or generic PTR names such as adsl-7.isp.example).

Pure: the text of a patterns file in, compiled patterns and problems out; a name and an address
in, the evidence that it is a consumer line out. Reading the shipped ``data/dynamic-patterns.txt``
and an admin's ``patterns_file``, and turning evidence into a verdict, is the rdns check's job;
the file format is documented in the header of the shipped file.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "Pattern",
    "Patterns",
    "address_patterns",
    "consumer_evidence",
    "host_part_end",
    "parse_patterns",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SEP = r"[-._]"


@dataclass(frozen=True, slots=True)
class Pattern:
    """One line of a patterns file, compiled, and where it came from (``file:line``)."""

    regex: re.Pattern[str]
    source: str


@dataclass(frozen=True, slots=True)
class Patterns:
    """What makes a name a consumer line, and the exceptions that overrule it."""

    dynamic: tuple[Pattern, ...] = ()
    exceptions: tuple[Pattern, ...] = ()

    def __add__(self, other: Patterns) -> Patterns:
        return Patterns(self.dynamic + other.dynamic, self.exceptions + other.exceptions)


def parse_patterns(text: str, source: str) -> tuple[Patterns, tuple[str, ...]]:
    """The patterns in one file's text, and a problem report for each line that was skipped."""
    dynamic: list[Pattern] = []
    exceptions: list[Pattern] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        is_exception = line.startswith("!")
        expression = line[1:].strip() if is_exception else line
        where = f"{source}:{number}"
        try:
            regex = re.compile(expression, re.IGNORECASE)
        except re.error as error:
            problems.append(f"{where}: not a valid regular expression ({error}), skipped: {line}")
            continue
        # An empty alternative ("dsl|") would make every name a consumer line (or an exception).
        if regex.search("") is not None:
            problems.append(f"{where}: matches an empty name, so every name; skipped: {line}")
            continue
        (exceptions if is_exception else dynamic).append(Pattern(regex, where))
    return Patterns(tuple(dynamic), tuple(exceptions)), tuple(problems)


def host_part_end(name: str) -> int:
    """Where the host part of ``name`` ends: the offset of its last two labels' leading dot."""
    labels = name.split(".")
    if len(labels) <= 2:
        return 0
    return len(".".join(labels[:-2]))


def _octet(value: int) -> str:
    """An octet in decimal, optionally zero-padded to three digits (203, 0, 00, 000)."""
    digits = str(value)
    return f"0{{0,{3 - len(digits)}}}{digits}" if len(digits) < 3 else digits


def address_patterns(ip: IPAddress) -> tuple[re.Pattern[str], ...]:
    """The ways a generic name embeds the client's whole address.

    Only the whole address counts: two or three octets appear in the names of real mail servers
    (a8-35.smtp-out.amazonses.com is 54.240.8.35; m228-5.mailgun.net is 159.135.228.5).
    """
    if isinstance(ip, ipaddress.IPv4Address):
        octets = ip.packed
        forward = _SEP.join(_octet(o) for o in octets)
        backward = _SEP.join(_octet(o) for o in reversed(octets))
        padded = "".join(f"{o:03d}" for o in octets)
        padded_backward = "".join(f"{o:03d}" for o in reversed(octets))
        decimal = [rf"(?<!\d){text}(?!\d)" for text in (forward, backward, padded, padded_backward)]
        # Hex is bounded by decimal digits only: ISPs prefix it with any letter (p5dc0ffee).
        return tuple(re.compile(p) for p in (*decimal, rf"(?<!\d){octets.hex()}(?!\d)"))
    # From the bytes, as for the nibbles of a blocklist name: Python 3.13 writes an IPv4-mapped
    # address with a dotted tail in both exploded and compressed form.
    hextets = [ip.packed[i : i + 2].hex() for i in range(0, 16, 2)]
    forms = (
        _SEP.join(re.escape(part) for part in _compressed(hextets).split(":")),  # 2001-db8--9
        _SEP.join(h.lstrip("0") or "0" for h in hextets),  # 2001-db8-0-0-0-0-0-9
        _SEP.join(hextets),  # 2001-0db8-0000-...-0009
        "".join(hextets),  # the 32 nibbles
    )
    return tuple(re.compile(rf"(?<![0-9a-f]){form}(?![0-9a-f])") for form in forms)


def _compressed(hextets: list[str]) -> str:
    """RFC 5952 text of an IPv6 address from its eight hextets: leading zeros dropped, the
    longest run of two or more zero groups as ``::``."""
    groups = [h.lstrip("0") or "0" for h in hextets]
    best, start = (0, 0), None
    for index, group in enumerate([*groups, "end"]):
        if group == "0" and start is None:
            start = index
        elif group != "0" and start is not None:
            if index - start > best[1] - best[0]:
                best = (start, index)
            start = None
    if best[1] - best[0] < 2:
        return ":".join(groups)
    return ":".join(groups[: best[0]]) + "::" + ":".join(groups[best[1] :])


def _starts_in(regex: re.Pattern[str], name: str, end: int) -> bool:
    # re.search finds the leftmost match, so if any match starts before ``end``, this one does.
    match = regex.search(name)
    return match is not None and match.start() < end


def consumer_evidence(name: str, ip: IPAddress, patterns: Patterns) -> str:
    """Why ``name`` looks like a consumer line, or "" when it does not."""
    name = name.lower().rstrip(".")
    end = host_part_end(name)
    if end == 0 or any(_starts_in(p.regex, name, end) for p in patterns.exceptions):
        return ""
    if any(_starts_in(regex, name, end) for regex in address_patterns(ip)):
        return "the name embeds the address"
    for pattern in patterns.dynamic:
        if _starts_in(pattern.regex, name, end):
            return f"pattern {pattern.source}"
    return ""
