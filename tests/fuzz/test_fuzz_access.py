"""Fuzz access-list parsing: parse, parse_line and parse_key report problems, never raise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.mail import accesslist

from .conftest import PROFILE
from .strategies import texts

FUZZ = settings.get_profile(PROFILE)

LINES = (
    "192.0.2.7 deny go away",
    "192.0.2.0/24 allow",
    "2001:db8::/32 deny",
    "::ffff:192.0.2.1 allow",
    "example.com allow our partner",
    ".example.com DENY",
    "user@example.com deny no thanks",
    "user@ allow",
    "@example.com deny",
    '"quoted local"@example.org deny',
    "bücher.example allow",
    "192.0.2.1/24 deny",
    "1.2.3 deny",
    "# a comment",
    "user@[192.0.2.1] deny",
    "example.com. allow",
    "x deny text with # and ü",
)
TOKENS = ("@", ".", "/", ":", "::", "allow", "deny", " ", "\t", "\n", "#", "[", "]", "%")

_KEY_TYPES = (str, tuple)


def check_parse(text: str) -> None:
    """parse gives a Parsed of Entry objects and problem texts for any text."""
    parsed = accesslist.parse(text, "fuzz")
    assert isinstance(parsed, accesslist.Parsed), parsed
    assert all(isinstance(entry, accesslist.Entry) for entry in parsed.entries), parsed
    assert all(isinstance(problem, str) for problem in parsed.problems), parsed


def check_parse_line(line: str) -> None:
    """parse_line gives (Entry, note) or a problem text for a line as parse() hands it over.

    parse() strips each line and skips blank and comment lines before it calls parse_line,
    whose contract is "one non-comment line", so the fuzzer does the same.
    """
    line = line.strip()
    if not line or line.startswith("#"):
        return
    result = accesslist.parse_line(line, "fuzz:1")
    if isinstance(result, str):
        return
    entry, note = result
    assert isinstance(entry, accesslist.Entry) and isinstance(note, str), result
    assert isinstance(entry.kind, accesslist.KeyKind) and isinstance(entry.key, _KEY_TYPES)


def check_parse_key(text: str) -> None:
    """parse_key gives (KeyKind, normalised key) or why the text is no key."""
    result = accesslist.parse_key(text)
    if isinstance(result, str):
        return
    kind, key = result
    assert isinstance(kind, accesslist.KeyKind) and isinstance(key, _KEY_TYPES), result


def check_all(text: str) -> None:
    """Every access-list entry point on one input (what ``make fuzz`` feeds)."""
    check_parse(text)
    for line in text.split("\n")[:20]:
        check_parse_line(line)
        check_parse_key(line.strip().partition(" ")[0])


FILES = st.lists(texts(LINES, TOKENS), max_size=8).map("\n".join)


@FUZZ
@given(st.one_of(FILES, texts(LINES, TOKENS)))
def test_parse_reports_problems_never_raises(text: str) -> None:
    check_parse(text)


@FUZZ
@given(texts(LINES, TOKENS))
def test_parse_line_reports_problems_never_raises(line: str) -> None:
    check_parse_line(line)


@FUZZ
@given(texts(tuple(line.split()[0] for line in LINES), TOKENS))
def test_parse_key_reports_problems_never_raises(text: str) -> None:
    check_parse_key(text)
