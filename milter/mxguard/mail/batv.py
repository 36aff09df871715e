"""Bounce Address Tag Validation, the ``prvs`` scheme of draft-levine-smtp-batv-01.

A tagged address is ``prvs=KDDDSSSSSS=local@domain``:

* ``K`` - one digit, the key number;
* ``DDD`` - three digits, the day the tag expires, in days since 1970-01-01 modulo 1000;
* ``SSSSSS`` - six hex digits, the first three octets of HMAC-SHA1(secret, K DDD orig-mailbox).

Decisions the draft leaves open:

* The key number is derived from the secret itself (``SHA-1(secret)`` modulo 10), not from its
  position in the list, so a tag still names its key after the list is rotated; a tag is checked
  against every configured secret with that key number.
* ``orig-mailbox`` is hashed lower-cased, so a relay that changes the case of the address does
  not break the tag; the hash digits are written in lower case and read in either case.
* The expiry day wraps modulo 1000: a tag is unexpired while ``(DDD - today) mod 1000`` is at
  most the lifetime in days, so the lifetime is capped at 999 days.

Everything here is pure (the day is passed in) and total: malformed input never raises.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass

PREFIX = "prvs"
MAX_LIFETIME_DAYS = 999
SECONDS_PER_DAY = 86400

_TAG = re.compile(r"prvs=([0-9])([0-9]{3})([0-9a-fA-F]{6})=(.+)\Z", re.IGNORECASE | re.DOTALL)
_MAX_ADDRESS_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Tag:
    """The parts of a tagged address."""

    original: str  # the untagged mailbox, local@domain
    key: int  # K
    day: int  # DDD
    hash: str  # SSSSSS, lower case


class Status(enum.StrEnum):
    """What checking an address against the secrets found."""

    VALID = "valid"
    UNTAGGED = "untagged"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"


def day_number(timestamp: float) -> int:
    """Days since 1970-01-01 (UTC) for a Unix time."""
    return int(timestamp // SECONDS_PER_DAY)


def key_number(secret: str) -> int:
    """The key number K a secret signs with: stable whatever its place in the list."""
    return int.from_bytes(hashlib.sha1(secret.encode("utf-8")).digest()[:4], "big") % 10


def signature(secret: str, key: int, day: int, original: str) -> str:
    """SSSSSS: the first three octets of HMAC-SHA1(secret, K DDD orig-mailbox), in hex."""
    source = f"{key % 10}{day % 1000:03d}{original.lower()}"
    mac = hmac.new(secret.encode("utf-8"), source.encode("utf-8", "surrogatepass"), "sha1")
    return mac.hexdigest()[:6]


def lifetime_days(seconds: float) -> int:
    """A lifetime in seconds as whole days (rounded up), between 1 and 999."""
    days = -int(-seconds // SECONDS_PER_DAY)
    return max(1, min(MAX_LIFETIME_DAYS, days))


def make_tag(address: str, secrets: tuple[str, ...], today: int, lifetime: int = 7) -> str:
    """``address`` (local@domain) tagged with the first secret, valid for ``lifetime`` days.

    Returns ``address`` unchanged when no secret is configured.
    """
    if not secrets:
        return address
    secret = secrets[0]
    key = key_number(secret)
    day = (today + max(1, min(MAX_LIFETIME_DAYS, lifetime))) % 1000
    return f"{PREFIX}={key}{day:03d}{signature(secret, key, day, address)}={address}"


def parse_tag(address: object) -> Tag | None:
    """The parts of a ``prvs=KDDDSSSSSS=local@domain`` address (angle brackets allowed), or
    None when it is not one."""
    if not isinstance(address, str) or len(address) > _MAX_ADDRESS_CHARS:
        return None
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    match = _TAG.match(text)
    if match is None or "@" not in match.group(4):
        return None
    key, day, digest, original = match.groups()
    return Tag(original, int(key), int(day), digest.lower())


def expired(day: int, today: int, lifetime: int) -> bool:
    """True when a tag that expires on ``day`` (mod 1000) is no longer valid on ``today``.

    A tag expires ``lifetime`` days after it is made, so a valid one expires between today and
    ``lifetime`` days ahead; anything further ahead, modulo 1000, lies in the past.
    """
    ahead = (day - today) % 1000
    return ahead > max(1, min(MAX_LIFETIME_DAYS, lifetime))


def valid(tag: Tag, secrets: tuple[str, ...], today: int, lifetime: int = 7) -> Status:
    """Check a parsed tag: its signature against every secret with its key number, then its
    expiry day."""
    signed = False
    for secret in secrets:
        if key_number(secret) != tag.key:
            continue
        expected = signature(secret, tag.key, tag.day, tag.original)
        if hmac.compare_digest(expected, tag.hash):
            signed = True
            break
    if not signed:
        return Status.BAD_SIGNATURE
    if expired(tag.day, today, lifetime):
        return Status.EXPIRED
    return Status.VALID


def check(address: object, secrets: tuple[str, ...], today: int, lifetime: int = 7) -> Status:
    """Whether ``address`` carries a valid, unexpired tag made with one of ``secrets``."""
    tag = parse_tag(address)
    if tag is None:
        return Status.UNTAGGED
    return valid(tag, secrets, today, lifetime)
