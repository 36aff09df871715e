"""Fuzz the From parser: author() gives an Author or one of its problem texts, never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.core import facts
from mxguard.mail import author

from .conftest import PROFILE
from .strategies import binaries, texts

FUZZ = settings.get_profile(PROFILE)

# The problem texts author() documents.
PROBLEMS = frozenset(
    {
        author.NO_FIELD,
        author.SEVERAL_FIELDS,
        author.SEVERAL_ADDRESSES,
        author.UNPARSABLE,
        author.NO_DOMAIN,
    }
)

SEEDS = (
    " Joe Q. Public <john.q.public@example.com>",
    " user@example.org",
    ' "Doe, Jane" <jane@example.org> (comment)',
    " =?utf-8?q?J=C3=B6rg?= <joerg@bücher.example>",
    " Mary Smith <mary@x.test>, jdoe@example.org",
    " A Group:Ed Jones <c@a.test>,joe@where.test;",
    " <@route.example:user@example.com>",
    " user@[192.0.2.1]",
    " first.@docomo.ne.jp",
    " Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
    " user@example.com.",
    ' "unterminated <evil@attacker.example>',
    " José <josé@例え.テスト>",
)
SEED_BYTES = tuple(seed.encode() for seed in SEEDS)
TOKENS = ("<", ">", "@", ",", ";", ":", '"', "(", ")", "[", "]", "\\", ".", "\r\n ", "xn--")


def check_author(values: list[bytes]) -> None:
    """author() on a message with these From values: an Author or a documented problem text."""
    message = facts.Message.from_raw([(b"From", value) for value in values])
    found = author.author(message)
    if isinstance(found, str):
        assert found in PROBLEMS, found
        return
    assert isinstance(found, author.Author), found
    assert isinstance(found.address, str) and isinstance(found.domain, str), found
    assert found.domain, found


def check_normalise_domain(text: str) -> None:
    """normalise_domain gives a lower-case ASCII name or None (it is total, like author())."""
    name = author.normalise_domain(text)
    assert name is None or (isinstance(name, str) and name.isascii() and name == name.lower())


@FUZZ
@given(binaries(SEED_BYTES, tuple(token.encode() for token in TOKENS)))
def test_author_of_one_from_field(value: bytes) -> None:
    check_author([value])


@FUZZ
@given(st.lists(binaries(SEED_BYTES), max_size=3))
def test_author_of_any_number_of_from_fields(values: list[bytes]) -> None:
    check_author(values)


@FUZZ
@given(texts(("example.com", "Bücher.Example.", "xn--bcher-kva.example", "例え.テスト")))
def test_normalise_domain_is_total(text: str) -> None:
    check_normalise_domain(text)
