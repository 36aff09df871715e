"""Hypothesis strategies shared by the fuzz tests: arbitrary text, and seeds cut and spliced."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

# Characters parsers of mail syntax treat specially, and the kinds of character that broke
# such parsers before: controls, DEL and C1, lone surrogates (surrogateescape decoding), U+FFFD,
# non-ASCII letters that IDNA maps, full-width and ideographic dots, combining marks, RTL text.
INTERESTING_CHARS: tuple[str, ...] = (
    *"<>@%!.,:;\"\\()[]{}=+-_/ #*?'`~|$&^",
    *"abcxyzABCXYZ0189",
    " ",
    "\t",
    "\r",
    "\n",
    "\r\n",
    "\x00",
    "\x01",
    "\x1c",
    "\x7f",
    "\x85",
    "\x9f",
    "\xa0",
    "\xad",
    "é",
    "ß",
    "ü",
    "İ",
    "中",
    "\u3002",
    "\uff0e",
    "\u0301",
    "\u200b",
    "\u200d",
    "\u2028",
    "\u202e",
    "\ufeff",
    "\ufffd",
    "\ud800",
    "\udc80",
    "\udfff",
    "\U0001f600",
)

# A list joined rather than st.text: "\r\n" counts as one element.
INTERESTING_TEXT = st.lists(st.sampled_from(INTERESTING_CHARS), max_size=80).map("".join)


def _cut(seed: str, start: int, length: int, insert: str) -> str:
    """``seed`` with ``length`` characters at ``start`` replaced by ``insert``."""
    start %= len(seed) + 1
    return seed[:start] + insert + seed[start + length :]


def _cut_bytes(seed: bytes, start: int, length: int, insert: bytes) -> bytes:
    start %= len(seed) + 1
    return seed[:start] + insert + seed[start + length :]


def spliced(seeds: Sequence[str], tokens: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """A seed with a span replaced by arbitrary or interesting text or one of ``tokens``."""
    inserts = st.one_of(
        st.text(max_size=6),
        INTERESTING_TEXT.map(lambda text: text[:6]),
        *([st.sampled_from(list(tokens))] if tokens else []),
    )
    one = st.builds(
        _cut,
        st.sampled_from(list(seeds)),
        st.integers(min_value=0, max_value=10_000),
        st.integers(min_value=0, max_value=8),
        inserts,
    )
    # Two edits, so that e.g. a quote opened by one edit can be closed by the other.
    return st.one_of(
        one,
        st.builds(
            _cut,
            one,
            st.integers(min_value=0, max_value=10_000),
            st.integers(min_value=0, max_value=8),
            inserts,
        ),
    )


def texts(seeds: Sequence[str] = (), tokens: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Arbitrary text, text of interesting characters and, given seeds, spliced seeds."""
    choices = [st.text(max_size=200), INTERESTING_TEXT]
    if seeds:
        choices.append(spliced(seeds, tokens))
    return st.one_of(*choices)


def spliced_bytes(seeds: Sequence[bytes], tokens: Sequence[bytes] = ()) -> st.SearchStrategy[bytes]:
    """A seed with a span replaced by arbitrary bytes, UTF-8 text or one of ``tokens``."""
    inserts = st.one_of(
        st.binary(max_size=6),
        INTERESTING_TEXT.map(lambda text: text[:6].encode("utf-8", "surrogatepass")),
        *([st.sampled_from(list(tokens))] if tokens else []),
    )
    return st.builds(
        _cut_bytes,
        st.sampled_from(list(seeds)),
        st.integers(min_value=0, max_value=100_000),
        st.integers(min_value=0, max_value=8),
        inserts,
    )


def binaries(seeds: Sequence[bytes] = (), tokens: Sequence[bytes] = ()) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, encoded interesting text and, given seeds, spliced seeds."""
    choices = [
        st.binary(max_size=200),
        INTERESTING_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")),
    ]
    if seeds:
        choices.append(spliced_bytes(seeds, tokens))
    return st.one_of(*choices)
