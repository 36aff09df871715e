"""Fuzz BATV: parse_tag, check and valid are total for any address."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.mail import batv

from .conftest import PROFILE
from .strategies import texts

FUZZ = settings.get_profile(PROFILE)

SECRETS = ("fuzz secret one", "zweites Geheimnis ü", "3")
SEEDS = (
    "prvs=1234abcdef=user@example.com",
    "<prvs=9999ABCDEF=user@example.com>",
    "PRVS=0000000000=a@b",
    "prvs=123=user@example.com",
    "user@example.com",
    "prvs=1234abcdef=",
)
TOKENS = ("prvs=", "=", "@", "<", ">", "0", "9", "a", "F", " ", "\n")


def tagged(address: str, today: int, lifetime: int = 7) -> str:
    """``address`` tagged with the first of SECRETS: a seed that reaches the HMAC check."""
    return batv.make_tag(address, SECRETS, today, lifetime)


def check_batv(address: object, secrets: tuple[str, ...], today: int, lifetime: int) -> None:
    """parse_tag gives a Tag or None, check and valid a Status, whatever the address is.

    ``secrets`` come from the INI file, read as UTF-8, so they never hold lone surrogates.
    """
    tag = batv.parse_tag(address)
    status = batv.check(address, secrets, today, lifetime)
    assert isinstance(status, batv.Status), status
    if tag is None:
        assert status is batv.Status.UNTAGGED, status
        return
    assert isinstance(tag, batv.Tag), tag
    assert isinstance(tag.original, str) and "@" in tag.original, tag
    assert 0 <= tag.key <= 9 and 0 <= tag.day <= 999, tag
    assert len(tag.hash) == 6 and tag.hash == tag.hash.lower(), tag
    assert batv.valid(tag, secrets, today, lifetime) is status


ADDRESSES = texts(SEEDS, TOKENS)
SECRET_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
SECRET_LISTS = st.one_of(
    st.just(SECRETS), st.lists(SECRET_TEXT, max_size=3).map(tuple), st.just(())
)
DAYS = st.integers(min_value=-1000, max_value=10**6)
LIFETIMES = st.integers(min_value=-10, max_value=2000)


@FUZZ
@given(
    st.one_of(ADDRESSES, st.none(), st.integers(), st.binary(max_size=20)),
    SECRET_LISTS,
    DAYS,
    LIFETIMES,
)
def test_parse_tag_and_check_are_total(
    address: object, secrets: tuple[str, ...], today: int, lifetime: int
) -> None:
    check_batv(address, secrets, today, lifetime)


@FUZZ
@given(ADDRESSES, st.integers(min_value=0, max_value=20_000), LIFETIMES, DAYS, LIFETIMES)
def test_tags_made_here_check_without_raising(
    address: str, made: int, made_lifetime: int, today: int, lifetime: int
) -> None:
    check_batv(tagged(address, made, made_lifetime), SECRETS, today, lifetime)
