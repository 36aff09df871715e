"""Fuzz the Received parser: parse() returns a Hop or None for any text, and never raises."""

from __future__ import annotations

import ipaddress
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.mail import received

from .conftest import PROFILE
from .strategies import texts

FUZZ = settings.get_profile(PROFILE)

SEEDS = (
    "from mail.example.com (mail.example.com [192.0.2.1]) by mx.example.net (Postfix) with"
    " ESMTPS id 4AbC12 for <user@example.net>; Mon, 23 Nov 2026 10:00:00 +0000 (UTC)",
    "from helo.example (unknown [2001:db8::1]) by mx.example.net with ESMTP id X;"
    " Tue, 1 Dec 2026 01:02:03 -0500",
    "from [192.0.2.7] (helo=client.example) by mx.example.org with esmtp (Exim 4.96)"
    " id 1abc-000; Wed, 02 Dec 2026 10:00:00 +0100",
    "from unknown (HELO foo) (192.0.2.9) by mx.example with SMTP; 3 Dec 2026 10:00:00 -0000",
    "by 2002:a05:6a10:1234:b0:4a:1::1 with SMTP id abc; Thu, 3 Dec 2026 04:05:06 -0800 (PST)",
    "from x.y.test by example.net via TCP with ESMTP id ABC12345 for <mary@example.net>;"
    "  21 Nov 1997 10:05:43 -0600",
    "from h (ident@h.example [IPv6:::ffff:192.0.2.1]:25 (may be forged)) by m; 1 Jan 2000 0:0 Z",
    "from exchange.example (fe80::1%4) by mx (10.0.0.1) with Microsoft SMTP Server",
)
TOKENS = ("from", "by", "with", "id", "for", "via", "(", ")", "((", "[", "]", ";", "helo=")

_IP = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def check_parse(value: str) -> None:
    """parse returns a Hop (str fields, an IP address or None, an aware date or None) or None."""
    hop = received.parse(value)
    if hop is None:
        return
    assert isinstance(hop, received.Hop), hop
    for text in (hop.from_name, hop.from_rdns, hop.by, hop.with_, hop.id, hop.for_):
        assert isinstance(text, str), hop
    assert hop.from_ip is None or isinstance(hop.from_ip, _IP), hop
    # The documented date is an aware datetime: naive ones are turned into UTC.
    assert hop.date is None or (isinstance(hop.date, datetime) and hop.date.tzinfo), hop


@FUZZ
@given(
    st.one_of(
        texts(SEEDS, TOKENS),
        # Many clauses and comments, in any order: what the scanner's step budget is for.
        st.lists(st.sampled_from([*TOKENS, " ", "x", "192.0.2.1", "Mon, 1 Jan 2024"])).map("".join),
    )
)
def test_parse_returns_a_hop_or_none(value: str) -> None:
    check_parse(value)
