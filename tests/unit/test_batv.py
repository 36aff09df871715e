"""BATV prvs tags (draft-levine-smtp-batv-01): format, HMAC, rotation, expiry and wrap-around."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxguard.mail import batv
from mxguard.mail.batv import Status

TODAY = 20_000  # 2024-10-04, day 0 modulo 1000
SECRET = "s3cret"


def draft_hash(secret: str, key: int, day: int, mailbox: str) -> str:
    """SSSSSS as the draft defines it: HMAC-SHA1 over K DDD orig-mailbox, first 3 octets."""
    source = f"{key}{day:03d}{mailbox}".encode()
    return hmac.new(secret.encode(), source, hashlib.sha1).digest()[:3].hex()


def test_tag_format_and_hash_follow_the_draft() -> None:
    tagged = batv.make_tag("alice@example.org", (SECRET,), TODAY, 7)
    match = re.fullmatch(r"prvs=(\d)(\d{3})([0-9a-f]{6})=alice@example\.org", tagged)
    assert match is not None, tagged
    key, day, digest = int(match[1]), int(match[2]), match[3]
    assert key == batv.key_number(SECRET)
    assert day == (TODAY + 7) % 1000 == 7
    assert digest == draft_hash(SECRET, key, day, "alice@example.org")


def test_parse_tag() -> None:
    tag = batv.parse_tag("<PRVS=1234ABCDEF=bob=x@example.org>")
    assert tag == batv.Tag("bob=x@example.org", 1, 234, "abcdef")
    assert batv.parse_tag("bob@example.org") is None


def test_round_trip_and_case_insensitivity() -> None:
    tagged = batv.make_tag("Alice@example.org", (SECRET,), TODAY)
    assert batv.check(tagged, (SECRET,), TODAY) is Status.VALID
    assert batv.check(tagged.upper(), (SECRET,), TODAY) is Status.VALID
    assert batv.parse_tag(tagged).original == "Alice@example.org"


def test_made_with_the_first_secret_accepted_with_any() -> None:
    old, new = "old-secret", "new-secret"
    before = batv.make_tag("alice@example.org", (old,), TODAY)
    after = batv.make_tag("alice@example.org", (new, old), TODAY)
    assert after == batv.make_tag("alice@example.org", (new,), TODAY)
    assert after != before
    for tagged in (before, after):
        assert batv.check(tagged, (new, old), TODAY + 1) is Status.VALID
        assert batv.check(tagged, (old, new), TODAY + 1) is Status.VALID
    assert batv.check(before, (new,), TODAY) is Status.BAD_SIGNATURE


def test_key_numbers_of_many_secrets_collide_harmlessly() -> None:
    secrets = tuple(f"secret-{n}" for n in range(25))  # more secrets than key digits
    for secret in secrets:
        tagged = batv.make_tag("a@example.org", (secret,), TODAY)
        assert batv.check(tagged, secrets, TODAY) is Status.VALID


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(lambda t: t.replace("=alice@", "=mallory@"), id="other-mailbox"),
        pytest.param(lambda t: t[:8] + ("0" if t[8] != "0" else "1") + t[9:], id="other-hash"),
        pytest.param(lambda t: t[:5] + str((int(t[5]) + 1) % 10) + t[6:], id="other-key"),
        pytest.param(lambda t: t[:6] + "999" + t[9:], id="other-day"),
    ],
)
def test_forged_tags_are_bad_signatures(forged) -> None:
    tagged = batv.make_tag("alice@example.org", (SECRET,), TODAY)
    assert batv.check(forged(tagged), (SECRET,), TODAY) is Status.BAD_SIGNATURE


def test_no_secret_no_tag() -> None:
    assert batv.make_tag("alice@example.org", (), TODAY) == "alice@example.org"
    tagged = batv.make_tag("alice@example.org", (SECRET,), TODAY)
    assert batv.check(tagged, (), TODAY) is Status.BAD_SIGNATURE
    assert batv.check("alice@example.org", (SECRET,), TODAY) is Status.UNTAGGED


@pytest.mark.parametrize(
    ("made", "checked", "status"),
    [
        pytest.param(TODAY, TODAY, Status.VALID, id="same-day"),
        pytest.param(TODAY, TODAY + 7, Status.VALID, id="last-day"),
        pytest.param(TODAY, TODAY + 8, Status.EXPIRED, id="day-after"),
        pytest.param(TODAY, TODAY + 500, Status.EXPIRED, id="long-ago"),
        # 995 + 7 = 1002: DDD is 002, past the wrap.
        pytest.param(TODAY - 5, TODAY - 1, Status.VALID, id="wrap-before"),
        pytest.param(TODAY - 5, TODAY + 2, Status.VALID, id="wrap-last-day"),
        pytest.param(TODAY - 5, TODAY + 3, Status.EXPIRED, id="wrap-expired"),
        pytest.param(TODAY - 3, TODAY + 1, Status.VALID, id="wrap-across"),
    ],
)
def test_expiry_and_the_mod_1000_wrap(made: int, checked: int, status: Status) -> None:
    tagged = batv.make_tag("alice@example.org", (SECRET,), made, 7)
    assert batv.check(tagged, (SECRET,), checked, 7) is status


def test_expired_pure_function() -> None:
    assert not batv.expired(2, 999, 7)  # three days ahead across the wrap
    assert batv.expired(998, 5, 7)  # seven days ago across the wrap
    assert not batv.expired(5, 5, 7)


def test_lifetime_days() -> None:
    assert batv.lifetime_days(7 * 86400) == 7
    assert batv.lifetime_days(3600) == 1
    assert batv.lifetime_days(1.5 * 86400) == 2
    assert batv.lifetime_days(5000 * 86400) == 999


@pytest.mark.parametrize(
    "text",
    [
        "",
        "prvs=",
        "prvs==alice@example.org",
        "prvs=123abcdef=alice@example.org",  # 9 characters
        "prvs=12345abcdefg=alice@example.org",
        "prvs=1234abcdeg=alice@example.org",  # g is not hex
        "prvs=1234abcdef=alice",  # no domain
        "prvs=1234abcdef=",
        "prvs=1234abcdef",
        "xprvs=1234abcdef=alice@example.org",
        "prvs=١٢٣٤abcdef=alice@example.org",  # Arabic-Indic digits
        "prvs=1234abcdef=\udcff@example.org",
        "prvs=1234abcdef=" + "a" * 5000 + "@example.org",
    ],
)
def test_malformed_tags(text: str) -> None:
    assert batv.check(text, (SECRET,), TODAY) in (Status.UNTAGGED, Status.BAD_SIGNATURE)


def test_lone_surrogates_do_not_raise() -> None:
    assert batv.check("prvs=1234abcdef=\udcff@example.org", (SECRET,), TODAY) is (
        Status.BAD_SIGNATURE
    )


@given(st.text(max_size=120), st.integers(min_value=0, max_value=100_000))
def test_parse_and_check_never_raise(text: str, today: int) -> None:
    tag = batv.parse_tag(text)
    assert tag is None or 0 <= tag.day <= 999
    assert batv.check(text, (SECRET, "other"), today) in tuple(Status)
    assert batv.check("prvs=0123abcdef=" + text, (SECRET,), today) in tuple(Status)


@given(st.from_regex(r"[a-z0-9.+_-]{1,20}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True))
def test_every_made_tag_checks(address: str) -> None:
    tagged = batv.make_tag(address, (SECRET,), TODAY)
    assert batv.parse_tag(tagged).original == address
    assert batv.check(tagged, (SECRET,), TODAY + 3) is Status.VALID
