"""DKIM verification of every signature of a message, with dkimpy, through our resolver.

dkimpy's ``DKIM.verify`` answers only True or False: a DNS timeout, a missing key and a bad
signature all look alike. RFC 8601 needs them apart (temperror, permerror, fail), so this module
drives dkimpy's steps itself: dkimpy parses and validates the signature fields, we look the key
up through the project's resolver, dkimpy parses the key and checks the hashes and the signature.
Parsed keys are cached by their record text, which saves dkimpy's pure-Python ASN.1 parse of an
RSA key on every message from the same signer.

On top of RFC 6376, a signature is refused (``fail``) when it uses rsa-sha1 (RFC 8301), when its
RSA key is shorter than the configured minimum, and when its ``i=`` is not in its ``d=`` domain.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim
import dkim.crypto
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.util import InvalidTagValueList, parse_tag_value

from mxguard.core.dns import DnsResult, Found, NotFound
from mxguard.core.facts import Message

# dkimpy logs every step at debug level (and formats those lines even when nobody reads them);
# its errors are ours to report, in the verdict, so its logger stays quiet.
_QUIET = logging.getLogger("mxguard.dkimpy")
_QUIET.setLevel(logging.CRITICAL)
_QUIET.propagate = False


def quiet_logger() -> logging.Logger:
    """The logger handed to dkimpy: silent, since its findings end up in our verdicts."""
    return _QUIET


KEY_CACHE_SIZE = 1024


def _int_to_bytes(n: int, length: int = -1) -> bytearray:
    """dkimpy's ``crypto.int2str`` (the low ``length`` bytes, big-endian), without its byte loop."""
    if length < 0:
        length = max(1, (n.bit_length() + 7) // 8)
    return bytearray((n & ((1 << (8 * length)) - 1)).to_bytes(length, "big"))


def _bytes_to_int(data: bytes | bytearray) -> int:
    """dkimpy's ``crypto.str2int``, without its byte loop."""
    return int.from_bytes(bytes(data), "big")


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _openssl_key(modulus: int, exponent: int) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


_OPENSSL_HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}


def _rsa_verify(digest: Any, signature: bytes, public_key: dict) -> bool:
    """dkimpy's RSASSA-PKCS1-v1_5 verification (RFC 8017), done by OpenSSL: dkimpy's own uses
    Python's pow(), 140 us of a 2048-bit key's 420 us verification here, against 20 us."""
    algorithm = _OPENSSL_HASHES.get(digest.name)
    if algorithm is None:
        return _dkimpy_rsa_verify(digest, signature, public_key)
    try:
        key = _openssl_key(public_key["modulus"], public_key["publicExponent"])
        key.verify(bytes(signature), digest.digest(), padding.PKCS1v15(), Prehashed(algorithm()))
    except (InvalidSignature, ValueError):
        return False
    return True


_dkimpy_rsa_verify = dkim.RSASSA_PKCS1_v1_5_verify
dkim.RSASSA_PKCS1_v1_5_verify = _rsa_verify

# dkimpy converts RSA integers to bytes one byte at a time in Python, which was the largest
# single cost of a verification in our profile (2 x 256 iterations for a 2048-bit key). The
# replacements compute the same values (tests/unit/test_dkim.py compares them).
dkim.crypto.int2str = _int_to_bytes
dkim.crypto.str2int = _bytes_to_int


@dataclass(frozen=True, slots=True)
class SignatureResult:
    """The outcome for one DKIM-Signature field, in the terms of RFC 8601."""

    result: str  # pass | fail | neutral | temperror | permerror
    reason: str
    domain: str = ""
    selector: str = ""
    identity: str = ""
    algorithm: str = ""
    signature: str = ""  # the b= value without white space (A-R shows its first characters)
    key_bits: int = 0


Lookup = Callable[[str, str], DnsResult]


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _parsed_key(record: bytes) -> tuple[Any, int, bytes, bool]:
    """dkimpy's parse of a key record: (key, bits, key type, tlsrpt service); cached."""
    return dkim.evaluate_pk("key", record)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value or "")


@functools.lru_cache(maxsize=256)
def _fields(raw: bytes) -> dict[bytes, bytes] | None:
    """A signature's tags; memoised, as the prefetch and the verification both read them."""
    try:
        return parse_tag_value(raw)
    except (InvalidTagValueList, ValueError, IndexError):
        return None


def signature_tags(raw: bytes) -> dict[bytes, bytes]:
    """The tags of a DKIM-Signature value ({} when it does not parse); do not modify."""
    return _fields(raw) or {}


def verify_message(
    message: bytes | Message,
    lookup: Lookup,
    min_key_bits: int = 1024,
    max_signatures: int = 10,
) -> list[SignatureResult]:
    """Verify the first ``max_signatures`` DKIM-Signature fields of ``message`` (bytes in
    SMTP form, or the fields and body as the MTA gave them)."""
    try:
        if isinstance(message, Message):
            verifier = dkim.DKIM(None, logger=quiet_logger(), minkey=min_key_bits)
            # The fields are split already: dkimpy's own parse of the joined bytes is skipped.
            verifier.headers = _signed_fields(message.crlf_fields(), max_signatures)
            verifier.body = _crlf_body(message.body)
        else:
            verifier = dkim.DKIM(message, logger=quiet_logger(), minkey=min_key_bits)
    except Exception as error:  # dkimpy's parser on hostile input: see _verify_one
        return [SignatureResult("permerror", f"message does not parse: {error}")]
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    return [
        _verify_one(verifier, index, lookup, min_key_bits)
        for index in range(min(count, max_signatures))
    ]


def _signed_fields(fields: list[tuple[bytes, bytes]], max_signatures: int) -> list[list[bytes]]:
    """The fields a signature may cover, in order: the signatures and the fields their h=
    name. dkimpy canonicalizes every field it is given before picking the signed ones, and a
    real message has far more fields (Received, X-...) than it signs."""
    named = {b"dkim-signature"}
    seen = 0
    for name, value in fields:
        if name.lower() == b"dkim-signature" and seen < max_signatures:
            seen += 1
            listed = signature_tags(value).get(b"h", b"")
            named.update(part.strip().lower() for part in listed.split(b":"))
    return [[name, value] for name, value in fields if name.lower() in named]


def _crlf_body(body: bytes) -> bytes:
    """The body with every line ending CRLF, as dkimpy's own parser leaves it."""
    if b"\n" in body.replace(b"\r\n", b""):
        return re.sub(rb"\r?\n", b"\r\n", body)
    return body


def _verify_one(
    verifier: dkim.DKIM, index: int, lookup: Lookup, min_key_bits: int
) -> SignatureResult:
    raw = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"][index]
    fields = signature_tags(raw)
    described = SignatureResult(
        "permerror",
        "",
        domain=_text(fields.get(b"d")).lower(),
        selector=_text(fields.get(b"s")),
        identity=_text(fields.get(b"i")),
        algorithm=_text(fields.get(b"a")).lower(),
        signature=re.sub(r"\s+", "", _text(fields.get(b"b"))),
    )
    try:
        return _checked(verifier, index, described, lookup, min_key_bits)
    except Exception as error:
        # dkimpy on hostile input raises binascii.Error, AssertionError (its ASN.1 parser),
        # ValueError, IndexError... besides DKIMException. Whatever it is, it concerns this
        # signature only: it is broken (permerror), and the others are still verified.
        return _with(described, "permerror", str(error) or type(error).__name__)


def _with(result: SignatureResult, outcome: str, reason: str, bits: int = 0) -> SignatureResult:
    return SignatureResult(
        outcome,
        reason[:200],
        result.domain,
        result.selector,
        result.identity,
        result.algorithm,
        result.signature,
        bits or result.key_bits,
    )


def _checked(
    verifier: dkim.DKIM,
    index: int,
    described: SignatureResult,
    lookup: Lookup,
    min_key_bits: int,
) -> SignatureResult:
    try:
        prepared = verifier.verify_headerprep(index)
    except dkim.ValidationError as error:
        text = str(error)
        if text.startswith("i= domain"):
            return _with(described, "fail", "i= is not within d=")
        return _with(described, "permerror", text)
    if not prepared:
        return _with(described, "permerror", "signature not found")
    signature, signed_names, signature_fields = prepared
    if described.algorithm == "rsa-sha1":
        return _with(described, "fail", "rsa-sha1 is not accepted (RFC 8301)")
    if not described.domain or not described.selector:
        return _with(described, "permerror", "no d= or s=")
    key_name = f"{described.selector}._domainkey.{described.domain}"
    answer = lookup(key_name, "TXT")
    if isinstance(answer, NotFound):
        return _with(described, "permerror", f"no key at {key_name}")
    if not isinstance(answer, Found):
        return _with(described, "temperror", f"key lookup for {key_name}: {answer.reason}")
    if len(answer.records) != 1:
        return _with(described, "permerror", f"{len(answer.records)} key records at {key_name}")
    try:
        key, bits, key_type, tlsrpt = _parsed_key(b"".join(answer.records[0]))
    except Exception as error:  # not base64, not DER, not a key: see _verify_one
        reason = str(error) or type(error).__name__
        return _with(described, "permerror", f"key at {key_name} does not parse: {reason}")
    if key is None:
        return _with(described, "permerror", f"key at {key_name} is not for email")
    if key_type == b"rsa" and bits < min_key_bits:
        return _with(described, "fail", f"{bits}-bit key is shorter than {min_key_bits}", bits)
    verifier.pk, verifier.keysize, verifier.ktag, verifier.seqtlsrpt = key, bits, key_type, tlsrpt
    try:
        valid = verifier.verify_sig_process(
            signature, signed_names, signature_fields[index], lambda *_a, **_k: None
        )
    except dkim.ValidationError as error:  # the body hash does not match
        return _with(described, "fail", str(error).partition(" (")[0], bits)
    if valid:
        return _with(described, "pass", "", bits)
    return _with(described, "fail", "signature does not verify", bits)
