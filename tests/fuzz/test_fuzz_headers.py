"""Fuzz header decoding: Message.from_raw and its views accept any bytes and never raise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.core import facts

from .conftest import PROFILE
from .strategies import binaries, texts

FUZZ = settings.get_profile(PROFILE)

NAMES = (b"From", b"To", b"Subject", b"DKIM-Signature", b"Received", b"X-\xff\xfe", b"")
VALUES = (
    b" Joe <joe@example.com>",
    b"no leading space",
    b" folded\n\tvalue\r\n continued",
    b" \xc3\xa9t\xc3\xa9 \xff\xfe invalid UTF-8",
    b"\r\n",
    b"",
)

Field = tuple[bytes, bytes]


def check_message(fields: list[Field], body: bytes, name: str) -> None:
    """from_raw, values, crlf_fields and as_bytes return their types for any bytes."""
    message = facts.Message.from_raw(fields, body)
    assert isinstance(message, facts.Message)
    assert len(message.headers) == len(fields)
    assert all(isinstance(n, str) and isinstance(v, str) for n, v in message.headers)
    assert message.body_size == len(body)
    values = message.values(name)
    assert isinstance(values, list) and all(isinstance(value, str) for value in values)
    lines = message.crlf_fields()
    assert isinstance(lines, list) and len(lines) == len(fields)
    for field_name, value in lines:
        assert isinstance(field_name, bytes) and isinstance(value, bytes)
        # SMTP form: every line of the value ends CRLF, no bare LF is left.
        assert value.endswith(b"\r\n") and b"\n" not in value.replace(b"\r\n", b"")
    data = message.as_bytes()
    assert isinstance(data, bytes) and data.endswith(b"\r\n" + body)


FIELDS = st.lists(
    st.tuples(st.one_of(binaries(NAMES), st.sampled_from(NAMES)), binaries(VALUES)), max_size=6
)


@FUZZ
@given(FIELDS, st.binary(max_size=100), texts(("From", "subject", "DKIM-SIGNATURE", "x-é")))
def test_message_views_return_their_types(fields: list[Field], body: bytes, name: str) -> None:
    check_message(fields, body, name)
