"""Fuzz DKIM: signature_tags and verify_message on random signatures and random key records.

verify_message must turn whatever dkimpy makes of hostile input into SignatureResult objects;
an exception would make every retry of the message a 451.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import dkim
from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.core import dns, facts
from mxguard.mail import dkimverify
from tests.support.milterclient import split_message

from .conftest import PROFILE
from .strategies import binaries, spliced_bytes

FUZZ = settings.get_profile(PROFILE)

DATA = Path(__file__).resolve().parent.parent / "data" / "dkim"
RESULTS = frozenset({"pass", "fail", "neutral", "temperror", "permerror", "none"})

# A key answer as plain data, so that a failing input prints as something one can paste:
# the TXT records at the name, () when there is none (NotFound), None when DNS fails (Unknown).
Answer = tuple[bytes, ...] | None

TEST_KEY = (DATA / "test.private").read_bytes()
TEST_RECORD = (DATA / "test.txt").read_bytes().strip()
ED25519_KEY = (DATA / "ed25519test.key").read_bytes().strip()
ED25519_RECORD = (DATA / "ed25519test.dns").read_bytes().strip()
PLAIN = (
    b"From: Joe <joe@example.com>\r\nTo: alice@example.test\r\nSubject: hi\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello.\r\n"
)


def signed(message: bytes = PLAIN, ed25519: bool = False) -> bytes:
    """``message`` signed by example.com (selector test, or ed for ed25519) with a test key."""
    if ed25519:
        field = dkim.sign(
            message, b"ed", b"example.com", ED25519_KEY, signature_algorithm=b"ed25519-sha256"
        )
    else:
        field = dkim.sign(message, b"test", b"example.com", TEST_KEY)
    return field + message


def zone(path: Path) -> dict[str, tuple[bytes, ...]]:
    """name -> TXT record, from a file of ``name. IN TXT "..."`` lines."""
    answers = {}
    for line in path.read_text().splitlines():
        match = re.match(r'(\S+?)\.?\s+IN\s+TXT\s+"(.*)"', line)
        if match:
            answers[match.group(1).lower()] = (match.group(2).encode(),)
    return answers


SIGNED = (
    signed(),
    signed(ed25519=True),
    signed(signed()),
    (DATA / "rfc6376.signed.msg").read_bytes(),
)
KEYS: dict[str, tuple[bytes, ...]] = {
    "test._domainkey.example.com": (TEST_RECORD,),
    "ed._domainkey.example.com": (ED25519_RECORD,),
    **zone(DATA / "rfc8463-appendix-a.zone"),
}
RECORDS = (TEST_RECORD, ED25519_RECORD, *(record for (record,) in KEYS.values()))


def _answer(answer: Answer) -> dns.DnsResult:
    if answer is None:
        return dns.Unknown("timeout")
    if not answer:
        return dns.NotFound(nxdomain=True)
    # A TXT record is a sequence of character-strings of at most 255 octets each.
    return dns.Found(
        tuple(
            tuple(record[i : i + 255] for i in range(0, len(record), 255)) or (b"",)
            for record in answer
        ),
        300,
    )


def fake_lookup(answers: Mapping[str, Answer], fallback: Answer) -> dkimverify.Lookup:
    """A lookup that serves ``answers`` by name (case-insensitive) and ``fallback`` otherwise."""

    def lookup(name: str, rdtype: str) -> dns.DnsResult:
        return _answer(answers.get(name.lower(), fallback))

    return lookup


def check_signature_tags(raw: bytes) -> None:
    """signature_tags gives a dict of bytes to bytes ({} when the value does not parse)."""
    tags = dkimverify.signature_tags(raw)
    assert isinstance(tags, dict), tags
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in tags.items()), tags


def check_verify(
    message: bytes,
    answers: Mapping[str, Answer],
    fallback: Answer,
    as_fields: bool = False,
    min_key_bits: int = 1024,
) -> None:
    """verify_message returns SignatureResults with a known result, whatever it is fed."""
    lookup = fake_lookup(answers, fallback)
    subject: bytes | facts.Message = message
    if as_fields:
        fields, body = split_message(message)
        subject = facts.Message.from_raw(fields, body)
    results = dkimverify.verify_message(subject, lookup, min_key_bits=min_key_bits)
    assert isinstance(results, list), results
    for result in results:
        assert isinstance(result, dkimverify.SignatureResult), result
        assert result.result in RESULTS, result
        assert isinstance(result.reason, str) and isinstance(result.key_bits, int), result
        for text in (result.domain, result.selector, result.identity, result.algorithm):
            assert isinstance(text, str), result


TAG_NAMES = (b"v", b"a", b"b", b"bh", b"c", b"d", b"h", b"i", b"l", b"q", b"s", b"t", b"x", b"z")
TAG_VALUES = st.one_of(
    st.sampled_from(
        [
            b"1",
            b"rsa-sha256",
            b"ed25519-sha256",
            b"rsa-sha1",
            b"relaxed/simple",
            b"example.com",
            b"test",
            b"ed",
            b"from:to:subject",
            b"@example.com",
            b"dns/txt",
            b"0",
            b"99999999999",
            b"-1",
            b"AAAA",
            b"",
            b"=",
            b"\xff",
        ]
    ),
    st.binary(max_size=30),
)
SIGNATURE_VALUES = st.lists(st.tuples(st.sampled_from(TAG_NAMES), TAG_VALUES), max_size=12).map(
    lambda tags: b";".join(b" " + name + b"=" + value for name, value in tags)
)
MESSAGES = st.one_of(
    st.sampled_from(SIGNED),
    spliced_bytes(SIGNED, (b";", b"=", b"\r\n", b"\r\n ", b"DKIM-Signature:", b"d=", b"s=")),
    SIGNATURE_VALUES.map(lambda value: b"DKIM-Signature:" + value + b"\r\n" + PLAIN),
)
KEY_RECORDS = st.one_of(
    st.sampled_from(RECORDS),
    spliced_bytes(RECORDS, (b";", b"=", b"k=", b"p=", b"v=DKIM1", b"h=sha1", b"t=s", b"s=*")),
    st.builds(
        lambda tags, key: tags + b"p=" + key,
        st.sampled_from([b"", b"v=DKIM1; ", b"k=rsa; ", b"k=ed25519; ", b"v=DKIM1; t=s; h=x; "]),
        binaries(),
    ),
)
ANSWERS = st.one_of(
    st.none(), st.just(()), st.lists(KEY_RECORDS, min_size=1, max_size=2).map(tuple)
)


@FUZZ
@given(
    st.one_of(
        binaries(), SIGNATURE_VALUES, spliced_bytes([s.split(b"\r\n\r\n")[0] for s in SIGNED])
    )
)
def test_signature_tags_return_a_dict(raw: bytes) -> None:
    check_signature_tags(raw)


@FUZZ
@given(MESSAGES, ANSWERS, st.booleans(), st.sampled_from([512, 1024, 2048]))
def test_verify_message_gives_results(
    message: bytes, answer: Answer, as_fields: bool, min_key_bits: int
) -> None:
    check_verify(message, {}, answer, as_fields, min_key_bits)


@FUZZ
@given(MESSAGES, st.booleans())
def test_verify_message_with_the_real_keys(message: bytes, as_fields: bool) -> None:
    # The real keys take mutated signatures past the key lookup into the hash and RSA code.
    check_verify(message, KEYS, (), as_fields)
