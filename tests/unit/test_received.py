"""The Received field parser, and the received check built on it."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.checks import received
from mxguard.core import options
from mxguard.core.check import Check
from mxguard.core.facts import Connection, Envelope, Facts, Message, Stage
from mxguard.core.findings import Allowed
from mxguard.core.options import CheckSettings
from mxguard.core.pipeline import Pipeline, StageResult
from mxguard.core.verdict import Action, Verdict, reject
from mxguard.mail.address import parse_path
from mxguard.mail.received import Hop, parse
from tests.unit import fakes

ip = ipaddress.ip_address


def at(text: str) -> datetime:
    """An aware datetime from ISO 8601 text."""
    return datetime.fromisoformat(text)


# --- the parser -------------------------------------------------------------------------------

# The shapes below follow what each MTA writes; names and addresses are documentation ones.
SHAPES = [
    pytest.param(
        "from mail.example.net (mail.example.net [192.0.2.10])\n"
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n"
        "\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\n"
        "\t(No client certificate requested)\n"
        "\tby mx.example.org (Postfix) with ESMTPS id 4T1abc2XyZz3\n"
        "\tfor <alice@example.org>; Mon,  1 Jan 2024 10:00:00 +0100 (CET)",
        Hop(
            "mail.example.net",
            "mail.example.net",
            ip("192.0.2.10"),
            "mx.example.org",
            "ESMTPS",
            "4T1abc2XyZz3",
            "alice@example.org",
            at("2024-01-01T10:00:00+01:00"),
        ),
        id="postfix-tls",
    ),
    pytest.param(
        "from laptop.lan (unknown [198.51.100.77])\n"
        "\t(Authenticated sender: carol)\n"
        "\tby smtp.example.net (Postfix) with ESMTPSA id 4AbC;\n"
        "\tTue, 02 Jan 2024 08:00:00 +0000 (UTC)",
        Hop(
            "laptop.lan",
            "",
            ip("198.51.100.77"),
            "smtp.example.net",
            "ESMTPSA",
            "4AbC",
            "",
            at("2024-01-02T08:00:00+00:00"),
        ),
        id="postfix-no-rdns-authenticated",
    ),
    pytest.param(
        "from helo.example (unknown [IPv6:2001:db8::25]) by mx (Postfix) with ESMTP id 4Q;"
        " Tue, 2 Jan 2024 08:00:00 +0000",
        Hop(
            "helo.example", "", ip("2001:db8::25"), "mx", "ESMTP", "4Q", "", at("2024-01-02T08:00Z")
        ),
        id="postfix-ipv6",
    ),
    pytest.param(
        "from helo (unknown [IPv6:::ffff:192.0.2.7]) by mx with ESMTP;"
        " Tue, 2 Jan 2024 08:00:00 +0000",
        Hop("helo", "", ip("192.0.2.7"), "mx", "ESMTP", "", "", at("2024-01-02T08:00Z")),
        id="ipv4-mapped",
    ),
    pytest.param(
        "by mx.example.org (Postfix, from userid 1000)\n\tid 4T9; Tue,  2 Jan 2024 09:00:00 +0100",
        Hop(by="mx.example.org", id="4T9", date=at("2024-01-02T09:00:00+01:00")),
        id="postfix-local-pickup",
    ),
    pytest.param(
        "from localhost (localhost [127.0.0.1])\n"
        "\tby mx.example.org (amavisd-new, port 10024) with ESMTP id Zx1\n"
        "\tfor <u@example.org>; Tue,  2 Jan 2024 09:00:00 +0100 (CET)",
        Hop(
            "localhost",
            "localhost",
            ip("127.0.0.1"),
            "mx.example.org",
            "ESMTP",
            "Zx1",
            "u@example.org",
            at("2024-01-02T09:00:00+01:00"),
        ),
        id="amavis-loopback",
    ),
    pytest.param(
        "from helo.example (rdns.example [192.0.2.1] (may be forged))\n"
        "\tby mail.example.net (8.17.1/8.17.1) with ESMTP id 401A0b1c012345\n"
        "\tfor <bob@example.net>; Mon, 1 Jan 2024 09:00:00 GMT",
        Hop(
            "helo.example",
            "rdns.example",
            ip("192.0.2.1"),
            "mail.example.net",
            "ESMTP",
            "401A0b1c012345",
            "bob@example.net",
            at("2024-01-01T09:00Z"),
        ),
        id="sendmail-may-be-forged",
    ),
    pytest.param(
        "from helo.example (identuser@rdns.example. [192.0.2.1]) by x (8.17.1/8.17.1/Submit);"
        " Mon, 1 Jan 2024 09:00:00 -0500",
        Hop(
            "helo.example",
            "rdns.example",
            ip("192.0.2.1"),
            "x",
            date=at("2024-01-01T09:00:00-05:00"),
        ),
        id="sendmail-ident",
    ),
    pytest.param(
        "from [192.0.2.9] ([192.0.2.9]) by mail.example.net (8.17.1/8.17.1) with ESMTP id 1;"
        " Mon, 1 Jan 2024 09:00:00 +0000",
        Hop(
            "[192.0.2.9]",
            "",
            ip("192.0.2.9"),
            "mail.example.net",
            "ESMTP",
            "1",
            "",
            at("2024-01-01T09:00Z"),
        ),
        id="sendmail-literal-helo",
    ),
    pytest.param(
        "from [192.0.2.1] (helo=foo.example)\n"
        "\tby mx.example.net with esmtpsa  (TLS1.3) tls TLS_AES_256_GCM_SHA384\n"
        "\t(Exim 4.96)\n\t(envelope-from <a@example.net>)\n\tid 1rKabc-000123-4X\n"
        "\tfor bob@example.org; Mon, 01 Jan 2024 10:00:00 +0000",
        Hop(
            "foo.example",
            "",
            ip("192.0.2.1"),
            "mx.example.net",
            "esmtpsa",
            "1rKabc-000123-4X",
            "bob@example.org",
            at("2024-01-01T10:00Z"),
        ),
        id="exim-no-rdns",
    ),
    pytest.param(
        "from host.example.net ([192.0.2.3] helo=other.example) by mx with esmtp (Exim 4.96);"
        " Mon, 01 Jan 2024 10:00:00 +0000",
        Hop(
            "other.example",
            "host.example.net",
            ip("192.0.2.3"),
            "mx",
            "esmtp",
            "",
            "",
            at("2024-01-01T10:00Z"),
        ),
        id="exim-helo-differs",
    ),
    pytest.param(
        "from host.example.net ([192.0.2.3]) by mx with esmtp (Exim 4.96);"
        " Mon, 01 Jan 2024 10:00:00 +0000",
        Hop(
            "host.example.net", "", ip("192.0.2.3"), "mx", "esmtp", "", "", at("2024-01-01T10:00Z")
        ),
        id="exim-helo-same",
    ),
    pytest.param(
        "from [192.0.2.1]:54321 (port=54321 helo=foo) by x with esmtp id 1",
        Hop("foo", "", ip("192.0.2.1"), "x", "esmtp", "1"),
        id="exim-port-no-date",
    ),
    pytest.param(
        "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41])\n"
        "        by mx.google.com with SMTPS id a1sor123456ple.12.2024.01.01.00.00.00\n"
        "        for <u@gmail.example>\n        (Google Transport Security);\n"
        "        Mon, 01 Jan 2024 00:00:00 -0800 (PST)",
        Hop(
            "mail-sor-f41.google.com",
            "mail-sor-f41.google.com",
            ip("209.85.220.41"),
            "mx.google.com",
            "SMTPS",
            "a1sor123456ple.12.2024.01.01.00.00.00",
            "u@gmail.example",
            at("2024-01-01T00:00:00-08:00"),
        ),
        id="gmail-mx",
    ),
    pytest.param(
        "by 2002:a05:6a10:1234:b0:4f2:1234:abcd with SMTP id abc123csp1234567pxb;\n"
        "        Mon, 1 Jan 2024 00:00:01 -0800 (PST)",
        Hop(
            by="2002:a05:6a10:1234:b0:4f2:1234:abcd",
            with_="SMTP",
            id="abc123csp1234567pxb",
            date=at("2024-01-01T00:00:01-08:00"),
        ),
        id="gmail-by-only",
    ),
    pytest.param(
        "(qmail 12345 invoked from network); 1 Jan 2024 10:00:00 -0000",
        Hop(date=at("2024-01-01T10:00Z")),
        id="qmail-invoked",
    ),
    pytest.param(
        "from unknown (HELO mail.example.com) (192.0.2.1)\n  by smtp.example.net with SMTP;"
        " 1 Jan 2024 10:00:00 -0000",
        Hop(
            "mail.example.com",
            "",
            ip("192.0.2.1"),
            "smtp.example.net",
            "SMTP",
            date=at("2024-01-01T10:00Z"),
        ),
        id="qmail-helo",
    ),
    pytest.param(
        "from client.example.com (HELO x.example) (user@192.0.2.1) by y with SMTP;"
        " 1 Jan 2024 10:00:00 -0000",
        Hop(
            "x.example",
            "client.example.com",
            ip("192.0.2.1"),
            "y",
            "SMTP",
            date=at("2024-01-01T10:00Z"),
        ),
        id="qmail-rdns-ident",
    ),
    pytest.param(
        "from foo.example ([IPv6:2001:db8::1]) by mx.example.org with ESMTP id X;"
        " Mon, 1 Jan 2024 10:00:00 +0000",
        Hop(
            "foo.example",
            "",
            ip("2001:db8::1"),
            "mx.example.org",
            "ESMTP",
            "X",
            "",
            at("2024-01-01T10:00Z"),
        ),
        id="ipv6-literal-only",
    ),
    pytest.param(
        "from EUR05-VI1-obe.outbound.protection.outlook.com (40.92.90.12) by"
        " AM0PR02MB1234.eurprd02.prod.outlook.com (2603:10a6:208:12::34) with Microsoft SMTP"
        " Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.1234.5"
        " via Frontend Transport; Tue, 2 Jan 2024 08:00:00 +0000",
        Hop(
            "EUR05-VI1-obe.outbound.protection.outlook.com",
            "",
            ip("40.92.90.12"),
            "AM0PR02MB1234.eurprd02.prod.outlook.com",
            "Microsoft",
            "15.20.1234.5",
            "",
            at("2024-01-02T08:00Z"),
        ),
        id="exchange-bare-ip",
    ),
    pytest.param(
        "from AM0PR02MB5555.eurprd02.prod.outlook.com ([fe80::1c2d:3e4f:5a6b:7c8d%4]) by"
        " AM0PR02MB5555.eurprd02.prod.outlook.com ([fe80::1c2d:3e4f:5a6b:7c8d%4]) with mapi id"
        " 15.20.7181.019; Tue, 2 Jan 2024 08:00:00 +0000",
        Hop(
            "AM0PR02MB5555.eurprd02.prod.outlook.com",
            "",
            ip("fe80::1c2d:3e4f:5a6b:7c8d"),
            "AM0PR02MB5555.eurprd02.prod.outlook.com",
            "mapi",
            "15.20.7181.019",
            "",
            at("2024-01-02T08:00Z"),
        ),
        id="exchange-mapi-zone",
    ),
    pytest.param(
        "from mail.example.com (HELO mail.example.com) ([192.0.2.1]) by esa1.example.net with"
        " ESMTP/TLS/ECDHE-RSA-AES256-GCM-SHA384; 02 Jan 2024 08:00:00 +0100",
        Hop(
            "mail.example.com",
            "mail.example.com",
            ip("192.0.2.1"),
            "esa1.example.net",
            "ESMTP/TLS/ECDHE-RSA-AES256-GCM-SHA384",
            date=at("2024-01-02T08:00:00+01:00"),
        ),
        id="ironport",
    ),
    pytest.param(
        "from 192.0.2.1 (EHLO mail.example.com) (192.0.2.1) by mta1.mail.example.com with"
        " SMTPs; Tue, 02 Jan 2024 08:00:00 +0000",
        Hop(
            "mail.example.com",
            "",
            ip("192.0.2.1"),
            "mta1.mail.example.com",
            "SMTPs",
            date=at("2024-01-02T08:00Z"),
        ),
        id="yahoo-ehlo",
    ),
    pytest.param(
        "FROM a.example (b.example [192.0.2.2]) BY c.example WITH esmtp ID 7 FOR <x@y.example>;"
        " Tue, 02 Jan 2024 08:00:00 +0000",
        Hop(
            "a.example",
            "b.example",
            ip("192.0.2.2"),
            "c.example",
            "esmtp",
            "7",
            "x@y.example",
            at("2024-01-02T08:00Z"),
        ),
        id="upper-case-keywords",
    ),
]


@pytest.mark.parametrize(("value", "expected"), SHAPES)
def test_real_world_shapes(value: str, expected: Hop) -> None:
    assert parse(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Mon, 1 Jan 2024 10:00:00 +0100 (CET)", "2024-01-01T09:00Z", id="comment"),
        pytest.param("1 Jan 2024 10:00:00 -0000", "2024-01-01T10:00Z", id="unknown-zone-is-utc"),
        pytest.param("Mon, 1 Jan 24 10:00:00 +0000", "2024-01-01T10:00Z", id="two-digit-year"),
        pytest.param("Mon, 1 Jan 2024 10:00:00 EST", "2024-01-01T15:00Z", id="named-zone"),
        pytest.param("\n\tMon,\n\t1 Jan 2024\t10:00:00 +0000", "2024-01-01T10:00Z", id="folded"),
    ],
)
def test_dates(value: str, expected: str) -> None:
    date = parse("from a (b [192.0.2.1]) by c; " + value).date
    assert date is not None and date.tzinfo is not None
    assert date == at(expected)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("from a by b", id="no-semicolon"),
        pytest.param("from a by b;", id="empty"),
        pytest.param("from a by b; yesterday", id="junk"),
        pytest.param("from a by b; 2 Jan 2024 00:00:00 +9999", id="impossible-zone"),
        pytest.param("from a by b; 31 Feb 2024 00:00:00 +0000", id="impossible-day"),
        pytest.param("from a by b; " + "1 Jan 2024 00:00:00 +0000 " * 20, id="too-long"),
    ],
)
def test_dates_that_are_not(value: str) -> None:
    hop = parse(value)
    assert hop is not None and (hop.from_name, hop.by) == ("a", "b")
    assert hop.date is None


def test_semicolon_in_a_comment_does_not_start_the_date() -> None:
    hop = parse("from a (b [192.0.2.1]; c) by d (e; Jan) with f; 1 Jan 2024 00:00:00 +0000")
    assert (hop.by, hop.with_, hop.date) == ("d", "f", at("2024-01-01T00:00Z"))


def test_nested_and_unclosed_comments() -> None:
    hop = parse("from a ((x (y [10.0.0.1])) b.example [192.0.2.4]) by c (unclosed (by d; x")
    assert (hop.from_rdns, hop.from_ip, hop.by, hop.date) == (
        "b.example",
        ip("192.0.2.4"),
        "c",
        None,
    )


def test_quoted_pair_parenthesis_does_not_close_the_comment() -> None:
    hop = parse(r"from a (x\) by evil.example [192.0.2.4]) by c; 1 Jan 2024 00:00:00 +0000")
    assert (hop.by, hop.from_ip) == ("c", ip("192.0.2.4"))


def test_nul_and_replacement_characters() -> None:
    hop = parse("x\x00from a\x00(b\ufffd [192.0.2.5])\x00by c\ufffd; 2 Jan 2024 00:00:00 +0000")
    assert hop == Hop("a", "b\ufffd", ip("192.0.2.5"), "c\ufffd", date=at("2024-01-02T00:00Z"))


def test_repeated_clauses_keep_the_first() -> None:
    hop = parse("from a (a [192.0.2.1]) by b by c with d with e")
    assert (hop.from_name, hop.by, hop.with_) == ("a", "b", "d")


def test_helo_argument_is_not_taken_as_the_address() -> None:
    hop = parse("from unknown (HELO [10.9.9.9]) ([192.0.2.8]) by x")
    assert (hop.from_name, hop.from_ip) == ("[10.9.9.9]", ip("192.0.2.8"))


@pytest.mark.parametrize(
    "value", ["", "   ", "\x00\x00", "garbage", "from", "(only a comment)", ";", "a b c; d"]
)
def test_values_that_do_not_parse(value: str) -> None:
    assert parse(value) is None


TOKENS = st.sampled_from(
    [
        "from", "by", "with", "id", "for", "via", " ", "\n\t", "(", ")", "[", "]", ";", "\\",
        "helo=", "HELO ", "unknown", "192.0.2.1", "::ffff:10.0.0.1", "IPv6:", "fe80::1%",
        "user@", "<", ">", "\x00", "\ufffd", "\ud800", "mx.example.org", ".",
        "Mon, 1 Jan 2024 00:00:00 +0000", "+9999", "31 Feb", "%4",
    ]
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(), st.lists(TOKENS, max_size=40).map("".join)))
def test_parse_never_raises(value: str) -> None:
    hop = parse(value)
    assert hop is None or isinstance(hop, Hop)
    if hop is not None:
        assert hop.from_ip is None or isinstance(
            hop.from_ip, ipaddress.IPv4Address | ipaddress.IPv6Address
        )
        assert hop.date is None or hop.date.tzinfo is not None


MEGABYTE = 1_000_000
HOSTILE = {
    "one-word": "a" * MEGABYTE,
    "words": "a " * (MEGABYTE // 2),
    "keywords": "from " * (MEGABYTE // 5),
    "opening": "(" * MEGABYTE,
    "closing": ")" * MEGABYTE,
    "empty-comments": "()" * (MEGABYTE // 2),
    "nested": "(" * (MEGABYTE // 2) + ")" * (MEGABYTE // 2),
    "escapes": "(\\" * (MEGABYTE // 2),
    "semicolons": "; " * (MEGABYTE // 2),
    "literals": "from x (" + "[192.0.2.1] " * (MEGABYTE // 12),
    "helo": "from x (" + "helo " * (MEGABYTE // 5),
    "nul": "\x00" * MEGABYTE,
    "replacement": "\ufffd" * MEGABYTE,
    "huge-comment": "from x (" + "y" * MEGABYTE + ") by z; Mon, 1 Jan 2024 00:00:00 +0000",
}


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_megabyte_is_fast(value: str) -> None:
    start = time.perf_counter()
    hop = parse(value)
    assert time.perf_counter() - start < 0.25
    assert hop is None or isinstance(hop, Hop)


def test_a_megabyte_comment_still_parses() -> None:
    hop = parse(HOSTILE["huge-comment"])
    assert (hop.from_name, hop.by, hop.date) == ("x", "z", at("2024-01-01T00:00Z"))


# --- the check --------------------------------------------------------------------------------

SITE = (
    "[milter]\nhostnames = mx.example.org\nlocal_domains = example.org\n"
    "trusted_networks = 127.0.0.0/8, ::1/128, 10.0.0.0/8, 2001:db8:1::/48\n"
)
NOW = datetime(2024, 1, 2, 12, 0, tzinfo=UTC)
DATE = "Tue, 2 Jan 2024 11:00:00 +0000"  # an hour before NOW
STRANGER = ip("192.0.2.7")
RELAY = ip("10.0.0.5")
DEFAULTS = received.ReceivedSettings()


def hop_text(
    helo: str = "sender.example",
    tcp: str = "sender.example [198.51.100.1]",
    by: str = "relay.example.net",
    date: str = DATE,
) -> str:
    """A Postfix-style Received value."""
    return f"from {helo} ({tcp})\n\tby {by} (Postfix) with ESMTP id 4X; {date}"


# What a clean message from outside looks like: the sender's relay, its content filter, and
# the sender's own submission server.
CLEAN = (
    hop_text("out.sender.example", "out.sender.example [198.51.100.2]", "relay.example.net"),
    hop_text("localhost", "localhost [127.0.0.1]", "out.sender.example"),
    hop_text("pc.sender.lan", "unknown [198.51.100.50]", "out.sender.example",
             "Tue, 2 Jan 2024 10:59:30 +0000"),
)  # fmt: skip


def run(
    *fields: str,
    client_ip=STRANGER,
    trusted: bool = False,
    auth_user: str = "",
    earlier: tuple = (),
    ini: str = SITE,
    **changes: object,
) -> Verdict | None:
    """The check's verdict on a message with these Received values (newest first)."""
    facts = Facts(
        Stage.EOM,
        Connection(client_ip=client_ip, trusted=trusted, auth_user=auth_user),
        Envelope("<a@sender.example>", parse_path("<a@sender.example>")),
        message=Message.from_text([("Received", value) for value in fields]),
        findings=fakes.findings(*earlier),
    )
    services = fakes.services(ini, now=NOW.timestamp())
    return fakes.decide(received.CHECK, facts, replace(DEFAULTS, **changes), services)


def test_a_clean_message_passes() -> None:
    assert run(*CLEAN) is None


def test_no_received_fields_at_all() -> None:
    assert run() is None


def test_a_thousand_hops_is_a_loop() -> None:
    verdict = run(*[hop_text()] * 1000)
    assert verdict.action is Action.REJECT and verdict.outcome == "received.loop"
    assert (verdict.reply.smtp_code, verdict.reply.dsn_code) == ("554", "5.4.6")
    assert verdict.text == "received: too many hops (1000 > 50)"


def test_the_limit_itself_is_not_a_loop() -> None:
    assert run(*[hop_text()] * 50) is None
    assert run(*[hop_text()] * 51).outcome == "received.loop"


def test_max_hops_is_configurable_and_zero_means_no_limit() -> None:
    assert run(*CLEAN, max_hops=2).text == "received: too many hops (3 > 2)"
    assert run(*[hop_text()] * 200, max_hops=0) is None


@pytest.mark.parametrize(
    "client",
    [
        pytest.param({"trusted": True, "client_ip": RELAY}, id="trusted"),
        pytest.param({"auth_user": "carol"}, id="authenticated"),
        pytest.param({"earlier": (Allowed("listed"),)}, id="access-allowed"),
        pytest.param({"forged": "off"}, id="forged-off"),
    ],
)
def test_a_loop_is_a_loop_for_every_client(client: dict) -> None:
    assert run(*[hop_text()] * 51, **client).outcome == "received.loop"


def test_the_loop_holds_in_the_pipeline_after_an_access_allow() -> None:
    pipeline = Pipeline([(received.CHECK, DEFAULTS)])
    facts = Facts(
        Stage.EOM,
        Connection(client_ip=STRANGER),
        message=Message.from_text([("Received", hop_text())] * 51),
        findings=fakes.findings(Allowed("listed")),
    )
    result = pipeline.run(Stage.EOM, facts, fakes.services(SITE))
    assert result.decision is not None and result.decision.outcome == "received.loop"


def test_unparsed_fields_are_counted_not_refused() -> None:
    verdict = run("garbage", *CLEAN, "\x00\ufffd")
    assert verdict.action is Action.CONTINUE and verdict.outcome == "received.unparsed"
    assert verdict.reason == "2 of 5 Received fields do not parse"
    assert verdict.auth == ()


def test_a_megabyte_field_in_a_message() -> None:
    start = time.perf_counter()
    verdict = run(CLEAN[0], "(" + "x (" * (MEGABYTE // 3))
    assert time.perf_counter() - start < 0.5
    assert verdict.reason == "1 of 2 Received fields do not parse"


def test_undecodable_bytes_and_nul_in_raw_fields() -> None:
    raw = b" from a\x00b (x.example [192.0.2.1])\n\tby mx.example.org\xff\xfe; " + DATE.encode()
    facts = Facts(
        Stage.EOM,
        Connection(client_ip=STRANGER),
        message=Message.from_raw([(b"Received", raw)]),
    )
    verdict = fakes.decide(
        received.CHECK, facts, DEFAULTS, fakes.services(SITE, now=NOW.timestamp())
    )
    # "mx.example.org\ufffd\ufffd" is not our host name, and nothing else is forged.
    assert verdict is None


FORGED = [
    pytest.param(
        (CLEAN[0], hop_text(by="mx.example.org")),
        "hop 2 claims to be received by our host mx.example.org",
        id="a-by-our-host",
    ),
    pytest.param(
        (hop_text(by="MX.Example.ORG."),),
        "hop 1 claims to be received by our host mx.example.org",
        id="a-by-our-host-case-and-dot",
    ),
    pytest.param(
        (hop_text(helo="mx.example.org"),),
        "hop 1 claims to be from our name mx.example.org outside our networks (198.51.100.1)",
        id="b-helo-our-hostname",
    ),
    pytest.param(
        (hop_text(helo="x.example", tcp="mail.example.org [198.51.100.1]"),),
        "hop 1 claims to be from our name mail.example.org outside our networks (198.51.100.1)",
        id="b-rdns-subdomain",
    ),
    pytest.param(
        ("from example.org by relay.example.net; " + DATE,),
        "hop 1 claims to be from our name example.org without an address",
        id="b-local-domain-no-address",
    ),
    pytest.param(
        (hop_text(helo="mx.example.org", tcp="localhost [127.0.0.1]"),),
        "hop 1 claims to be from our name mx.example.org outside our networks (127.0.0.1)",
        id="b-our-name-at-loopback",
    ),
    pytest.param(
        (CLEAN[0], hop_text(helo="pc", tcp="pc.lan [10.1.2.3]")),
        "hop 2 claims to be from our network (10.1.2.3)",
        id="c-trusted-network",
    ),
    pytest.param(
        (hop_text(helo="pc", tcp="unknown [IPv6:2001:db8:1::9]"),),
        "hop 1 claims to be from our network (2001:db8:1::9)",
        id="c-trusted-network-ipv6",
    ),
    pytest.param(
        (hop_text(helo="pc", tcp="unknown [IPv6:::ffff:10.1.2.3]"),),
        "hop 1 claims to be from our network (10.1.2.3)",
        id="c-ipv4-mapped",
    ),
    pytest.param(
        (hop_text(helo="mx.example.org", tcp="mx.example.org [10.0.0.25]"),),
        "hop 1 claims to be from our network (10.0.0.25)",
        id="c-our-name-at-our-address",
    ),
    pytest.param(
        (CLEAN[0], hop_text(date="Thu, 4 Jan 2024 12:00:00 +0000")),
        "hop 2 is dated 48.0h in the future (2024-01-04 12:00:00 UTC)",
        id="d-future",
    ),
    pytest.param(
        (
            hop_text(date="Mon, 1 Jan 2024 09:00:00 +0000"),
            "garbage",
            hop_text(date="Tue, 2 Jan 2024 10:00:00 +0000"),
        ),
        "hop 1 is dated 25.0h before hop 3 below it "
        "(2024-01-01 09:00:00 UTC < 2024-01-02 10:00:00 UTC)",
        id="d-backwards",
    ),
]


@pytest.mark.parametrize(("fields", "reason"), FORGED)
def test_forged(fields: tuple[str, ...], reason: str) -> None:
    verdict = run(*fields)
    assert verdict.action is Action.REJECT and verdict.outcome == "received.forged"
    assert (verdict.reply.smtp_code, verdict.reply.dsn_code) == ("550", "5.7.1")
    assert verdict.reason == reason
    assert verdict.text == "received: " + reason


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param((hop_text(by="mx.example.org.evil.example"),), id="a-lookalike-by"),
        pytest.param((hop_text(by="example.org"),), id="a-local-domain-is-not-a-host"),
        pytest.param((hop_text(helo="notexample.org"),), id="b-lookalike-helo"),
        pytest.param((hop_text(helo="example.org.evil.example"),), id="b-ours-as-prefix"),
        pytest.param((hop_text(tcp="sender.example [11.0.0.5]"),), id="c-outside-net"),
        pytest.param((hop_text("localhost", "localhost [127.0.0.1]"),), id="c-loopback-v4"),
        pytest.param((hop_text("localhost", "localhost [IPv6:::1]"),), id="c-loopback-v6"),
        pytest.param((hop_text("[127.0.0.1]", "localhost [127.0.0.2]"),), id="c-loopback-8"),
        pytest.param((hop_text(date="Tue, 2 Jan 2024 23:00:00 +0000"),), id="d-future-within-skew"),
        pytest.param(
            (
                hop_text(date="Tue, 2 Jan 2024 09:00:00 +0000"),
                hop_text(date="Tue, 2 Jan 2024 10:00:00 +0000"),
            ),
            id="d-backwards-within-skew",
        ),
        pytest.param((hop_text(date="sometime"), hop_text()), id="d-undated-skipped"),
    ],
)
def test_not_forged(fields: tuple[str, ...]) -> None:
    assert run(*fields) is None


def test_skews_are_configurable() -> None:
    ahead = hop_text(date="Tue, 2 Jan 2024 14:00:00 +0000")  # two hours ahead
    assert run(ahead) is None
    assert run(ahead, future_skew=3600.0).outcome == "received.forged"
    backwards = (hop_text(date="Tue, 2 Jan 2024 09:00:00 +0000"), hop_text())
    assert run(*backwards) is None
    assert run(*backwards, backwards_skew=600.0).outcome == "received.forged"


def test_the_first_evidence_from_the_top_is_named() -> None:
    fields = (hop_text(tcp="x [10.0.0.1]"), hop_text(by="mx.example.org"))
    assert run(*fields).reason == "hop 1 claims to be from our network (10.0.0.1)"


def test_forged_tag_and_off() -> None:
    forged = hop_text(by="mx.example.org")
    tagged = run(forged, forged="tag")
    assert tagged.action is Action.TAG and tagged.outcome == "received.forged"
    assert run(forged, forged="off") is None


def test_forged_decides_over_unparsed_fields() -> None:
    verdict = run("garbage", hop_text(by="mx.example.org"))
    assert verdict.outcome == "received.forged"
    assert "do not parse" not in verdict.reason


@pytest.mark.parametrize(
    "client",
    [
        pytest.param({"trusted": True, "client_ip": RELAY}, id="trusted"),
        pytest.param({"auth_user": "carol@example.org"}, id="authenticated"),
        pytest.param({"earlier": (Allowed("listed"),)}, id="access-allowed"),
    ],
)
def test_our_own_clients_are_not_judged(client: dict) -> None:
    forged = (hop_text(by="mx.example.org"), hop_text(tcp="x [10.0.0.1]"))
    assert run(*forged).outcome == "received.forged"  # the same fields from a stranger
    assert run(*forged, **client) is None


# --- find_client ------------------------------------------------------------------------------

# What our front-end relay hands us: its content filter's hop, then its own from the client.
FRONT_END = (
    hop_text("localhost", "localhost [127.0.0.1]", "front.example.org"),
    hop_text("client.sender.example", "client.sender.example [203.0.113.7]", "front.example.org"),
    *CLEAN,
)


def test_find_client_names_the_first_outside_hop() -> None:
    verdict = run(*FRONT_END, client_ip=RELAY, trusted=True, find_client=True)
    assert verdict.action is Action.CONTINUE and verdict.outcome == "received.client"
    assert verdict.reason == "the client outside our relays is 203.0.113.7"
    assert verdict.auth == ()
    facts = Facts(
        Stage.EOM,
        Connection(client_ip=RELAY, trusted=True),
        message=Message.from_text([("Received", value) for value in FRONT_END]),
    )
    services = fakes.services(SITE, now=NOW.timestamp())
    outside = received.real_client(facts, replace(DEFAULTS, find_client=True), services)
    assert outside is not None
    assert (str(outside.connection.client_ip), outside.connection.helo) == (
        "203.0.113.7",
        "client.sender.example",
    )
    assert (outside.connection.trusted, outside.connection.relay_ip) == (False, RELAY)


def test_find_client_walks_across_our_relays() -> None:
    chain = (hop_text("relay2", "relay2 [10.0.0.9]", "front.example.org"), *FRONT_END)
    verdict = run(*chain, "garbage", client_ip=RELAY, trusted=True, find_client=True)
    assert verdict.reason == (
        "1 of 7 Received fields do not parse; the client outside our relays is 203.0.113.7"
    )
    assert verdict.outcome == "received.unparsed"


@pytest.mark.parametrize(
    "client",
    [
        pytest.param({"find_client": False, "trusted": True}, id="option-off"),
        pytest.param({"find_client": True}, id="untrusted-client"),
        pytest.param({"find_client": True, "auth_user": "carol"}, id="authenticated-only"),
    ],
)
def test_find_client_needs_the_option_and_a_trusted_client(client: dict) -> None:
    assert run(*FRONT_END, **client) is None


def test_first_untrusted_hop() -> None:
    networks = (ipaddress.ip_network("10.0.0.0/8"),)
    inside = Hop("relay", "", ip("10.0.0.9"))
    loopback = Hop("localhost", "", ip("127.0.0.1"))
    outside = Hop("client.example", "", ip("203.0.113.7"))
    assert received.first_untrusted_hop([inside, loopback, outside, inside], networks) is outside
    assert received.first_untrusted_hop([inside, None, outside], networks) is None
    assert received.first_untrusted_hop([inside, Hop(by="x"), outside], networks) is None
    assert received.first_untrusted_hop([inside, loopback], networks) is None
    assert received.first_untrusted_hop([], networks) is None


# --- declaration ------------------------------------------------------------------------------


def test_declaration_and_defaults() -> None:
    assert received.CHECK.name == "received" and set(received.CHECK.stages) == {Stage.EOM}
    assert received.CHECK.exempt == frozenset()
    assert [spec.name for spec in options.specs(received.ReceivedSettings)] == [
        "enabled",
        "mode",
        "forged",
        "max_hops",
        "find_client",
        "future_skew",
        "backwards_skew",
    ]
    assert (DEFAULTS.forged, DEFAULTS.max_hops, DEFAULTS.find_client) == ("reject", 50, False)
    assert (DEFAULTS.future_skew, DEFAULTS.backwards_skew) == (86400.0, 86400.0)


def test_forged_accepts_only_its_choices() -> None:
    spec = next(s for s in options.specs(received.ReceivedSettings) if s.name == "forged")
    assert spec.kind.parse(" TAG ") == "tag"
    with pytest.raises(ValueError):
        spec.kind.parse("drop")


def dkim_pass(domain: str, result: str = "pass") -> tuple:
    return (fakes.dkim_signatures((domain, result)),)


def test_our_own_signed_mail_coming_back_from_a_list_is_not_forged() -> None:
    # Our user's post, signed by us, relayed by an outside list back to our other subscribers.
    round_trip = (
        hop_text("lists.example.net", "lists.example.net [198.51.100.9]", "mx.example.org"),
        hop_text("mx.example.org", "mx.example.org [203.0.113.25]", "lists.example.net"),
        hop_text("pc", "pc [10.1.2.3]", "mx.example.org"),
    )
    assert run(*round_trip).outcome == "received.forged"
    assert run(*round_trip, earlier=dkim_pass("example.org")) is None
    # A signature that failed, or one by somebody else, excuses nothing.
    assert run(*round_trip, earlier=dkim_pass("example.org", "fail")).outcome == "received.forged"
    assert run(*round_trip, earlier=dkim_pass("lists.example.net")).outcome == "received.forged"


def test_behind_a_front_end_the_earlier_checks_run_again_for_the_outside_client() -> None:
    seen: list[tuple[str, str, object, bool]] = []

    def record(stage_name: str):
        def check(facts, settings, services):
            connection = facts.connection
            seen.append(
                (stage_name, str(connection.client_ip), connection.helo, connection.trusted)
            )
            if str(connection.client_ip) == "192.0.2.66":
                return reject("fake", "listed", "listed client")
            return None

        return check

    fake = Check(
        name="fake",
        summary="",
        settings=CheckSettings,
        stages={Stage.CONNECT: record("connect"), Stage.MAIL: record("mail")},
    )
    settings = replace(DEFAULTS, find_client=True)
    pipeline = Pipeline([(received.CHECK, settings), (fake, CheckSettings())])

    def eom_from(outside_ip: str) -> StageResult:
        chain = (
            hop_text("frontend", f"frontend [{RELAY}]", "mx.example.org"),  # our relay's inside hop
            hop_text("out.sender.example", f"out.sender.example [{outside_ip}]", "frontend"),
            hop_text("pc", "pc [198.51.100.50]", "out.sender.example"),
        )
        facts = Facts(
            Stage.EOM,
            Connection(client_ip=RELAY, trusted=True),
            Envelope("<a@sender.example>", parse_path("<a@sender.example>")),
            message=Message.from_text([("Received", value) for value in chain]),
        )
        return pipeline.run(Stage.EOM, facts, fakes.services(SITE, now=NOW.timestamp()))

    result = eom_from("192.0.2.9")
    assert result.decision is None
    assert seen == [
        ("connect", "192.0.2.9", "out.sender.example", False),
        ("mail", "192.0.2.9", "out.sender.example", False),
    ]
    # Our own relay's hops ("by mx.example.org") are not taken for forgeries.
    assert not any(v.outcome == "received.forged" for v in result.verdicts)
    refused = eom_from("192.0.2.66")
    assert refused.decision is not None and refused.decision.text == "fake: listed client"
