"""Fuzz the envelope path parser: parse_path, parse_domain and routing_tricks never raise."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.mail import address, address_error, domain_name

from .conftest import PROFILE
from .strategies import texts

FUZZ = settings.get_profile(PROFILE)

# The ids routing_tricks() reports, in the order it documents.
TRICKS = ("source-route", "percent-hack", "bang-path", "quoted-route", "multiple-at")

SEEDS = (
    "<user@example.com>",
    "user@example.com",
    "<>",
    "<postmaster>",
    '<"john doe"@example.org>',
    '<"a\\"b"@example.org>',
    "<@relay.example,@b.example:user@example.com>",
    "<user%other.example@relay.example>",
    "<host!user@relay.example>",
    "<user@[192.0.2.1]>",
    "<user@[IPv6:2001:db8::1]>",
    "<user@[IPv6:::ffff:192.0.2.1]>",
    "<user@[x-tag:content]>",
    "<пример@例え.テスト>",
    "<user@xn--bcher-kva.example>",
    "<a.b.c@sub.example.co.uk.>",
    "  <user@example.com>  ",
)
TOKENS = ("@", "<", ">", '"', "\\", "[", "]", ":", ",", ".", "%", "!", "IPv6:", "::", "xn--")

ANY = st.one_of(texts(SEEDS, TOKENS), st.none(), st.integers(), st.binary(max_size=20))

_IP = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def check_parse_path(text: object, allow_null: bool, allow_bare_postmaster: bool) -> None:
    """parse_path returns a Mailbox, NullPath or AddressError for anything; it never raises."""
    result = address.parse_path(
        text,  # type: ignore[arg-type]  # non-strings are part of the contract too
        allow_null=allow_null,
        allow_bare_postmaster=allow_bare_postmaster,
    )
    assert isinstance(result, address.Mailbox | address.NullPath | address.AddressError), result
    if isinstance(result, address.AddressError):
        assert isinstance(result.text, str) and isinstance(result.reason, str), result
    elif isinstance(result, address.Mailbox):
        assert isinstance(result.local_part, str) and isinstance(result.domain, str), result
        assert result.literal is None or isinstance(result.literal, _IP), result
        assert all(isinstance(hop, str) for hop in result.source_route), result
        assert isinstance(result.address, str)  # the property renders every parsed mailbox
    else:
        assert allow_null, "<> came back as a NullPath although it was not allowed"


def check_parse_domain(text: object) -> None:
    """parse_domain returns a Domain or an AddressError for anything; it never raises."""
    result = domain_name.parse_domain(text)  # type: ignore[arg-type]
    assert isinstance(result, domain_name.Domain | address_error.AddressError), result
    if isinstance(result, domain_name.Domain):
        assert isinstance(result.name, str), result
        assert result.literal is None or isinstance(result.literal, _IP), result


def check_routing_tricks(text: object) -> None:
    """routing_tricks returns a tuple of known trick ids in their fixed order; never raises."""
    found = address.routing_tricks(text)  # type: ignore[arg-type]
    assert isinstance(found, tuple), found
    assert set(found) <= set(TRICKS), found
    assert list(found) == sorted(found, key=TRICKS.index), found


def check_all(text: object, allow_null: bool = False, allow_bare_postmaster: bool = True) -> None:
    """Every address entry point on one input (what ``make fuzz`` feeds)."""
    check_parse_path(text, allow_null, allow_bare_postmaster)
    check_parse_domain(text)
    check_routing_tricks(text)
    if isinstance(text, str) and text.startswith("<") and "@" in text:
        # The domain part on its own is what a HELO or an access key looks like.
        check_parse_domain(text.rpartition("@")[2].rstrip(">"))


@FUZZ
@given(ANY, st.booleans(), st.booleans())
def test_parse_path_returns_its_types(text: object, allow_null: bool, postmaster: bool) -> None:
    check_parse_path(text, allow_null, postmaster)


@FUZZ
@given(st.one_of(ANY, texts(("example.com", "[192.0.2.1]", "[IPv6:::1]", "bücher.example"))))
def test_parse_domain_returns_its_types(text: object) -> None:
    check_parse_domain(text)


@FUZZ
@given(ANY)
def test_routing_tricks_returns_known_ids(text: object) -> None:
    check_routing_tricks(text)
