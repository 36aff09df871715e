"""The header From author as DMARC sees it: one mailbox, or a problem text, never a guess."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.core.facts import Message
from mxguard.mail.author import Author, author, normalise_domain

PROBLEMS = {
    "no From field",
    "several From fields",
    "several addresses in From",
    "From does not parse",
    "From has no domain",
}


def from_field(*values: str) -> Message:
    return Message.from_text([("Subject", "hi"), *(("From", value) for value in values)])


@pytest.mark.parametrize(
    ("value", "address", "domain"),
    [
        pytest.param("joe@example.com", "joe@example.com", "example.com", id="addr-spec"),
        pytest.param("Joe <joe@example.com>", "joe@example.com", "example.com", id="name-addr"),
        pytest.param('"Doe, Joe" <j@example.com>', "j@example.com", "example.com", id="quoted"),
        pytest.param("<joe@example.com>", "joe@example.com", "example.com", id="angle-only"),
        pytest.param("(Joe) joe@example.com", "joe@example.com", "example.com", id="comment"),
        pytest.param(
            "joe@example.com (a@evil.test)", "joe@example.com", "example.com", id="comment-after"
        ),
        pytest.param(
            "Joe (x (nested) y) <joe@example.com>",
            "joe@example.com",
            "example.com",
            id="nested-comment",
        ),
        pytest.param(
            "John Q. Public <jqp@example.com>", "jqp@example.com", "example.com", id="obs-phrase"
        ),
        pytest.param("Joe <Joe@Mail.EXAMPLE.Com>", "Joe@Mail.EXAMPLE.Com", "mail.example.com"),
        pytest.param("joe@example.com.", "joe@example.com.", "example.com", id="trailing-dot"),
        pytest.param(
            "=?utf-8?q?J=C3=B6rg?= <j@example.com>", "j@example.com", "example.com", id="encoded"
        ),
        pytest.param(
            '"=?utf-8?b?SsO2cmc=?=" <j@example.com>', "j@example.com", "example.com", id="enc-q"
        ),
        pytest.param("Jörg <jörg@bücher.de>", "jörg@bücher.de", "xn--bcher-kva.de", id="utf8"),
        pytest.param("a@BÜCHER.de", "a@BÜCHER.de", "xn--bcher-kva.de", id="utf8-upper"),
        pytest.param("a@💌.example", "a@💌.example", "xn--rr8h.example", id="idna2003-only"),
        pytest.param('"a\\"b"@example.com', '"a\\"b"@example.com', "example.com", id="qpair"),
        pytest.param(
            "joe . smith @ example . com", "joe.smith@example.com", "example.com", id="obs-cfws"
        ),
        pytest.param("Joe\r\n <joe@example.com>", "joe@example.com", "example.com", id="folded"),
        pytest.param("a@example.com,", "a@example.com", "example.com", id="obs-null-member"),
        pytest.param(
            "first.@docomo.ne.jp", "first.@docomo.ne.jp", "docomo.ne.jp", id="sloppy-local"
        ),
        pytest.param("a@xn--BCHER-KVA.de", "a@xn--BCHER-KVA.de", "xn--bcher-kva.de"),
    ],
)
def test_one_author(value: str, address: str, domain: str) -> None:
    assert author(from_field(value)) == Author(address, domain)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        # The OpenDMARC CVE class: an address a verifier and a reader pick differently.
        pytest.param("a@evil.test, b@good.test", "several addresses in From", id="two"),
        pytest.param("A <a@evil.test>, B <b@good.test>", "several addresses in From"),
        pytest.param('"x" <a@evil.test> <b@good.test>', "From does not parse", id="two-angles"),
        pytest.param("a@evil.test <b@good.test>", "From does not parse", id="addr-as-name"),
        pytest.param("<a@evil.test>b@good.test", "From does not parse", id="trailing-addr"),
        pytest.param("<<a@evil.test>>", "From does not parse", id="double-angle"),
        pytest.param("Group: a@evil.test, b@good.test;", "From does not parse", id="group"),
        pytest.param("undisclosed-recipients:;", "From does not parse", id="empty-group"),
        pytest.param("", "From does not parse", id="empty"),
        pytest.param("   ", "From does not parse", id="blank"),
        pytest.param(",", "From does not parse", id="only-comma"),
        pytest.param("<>", "From does not parse", id="null-angle"),
        pytest.param('"unterminated <a@evil.test>', "From does not parse", id="open-quote"),
        pytest.param("Joe <a@evil.test", "From does not parse", id="open-angle"),
        pytest.param("Joe a@evil.test>", "From does not parse", id="close-angle"),
        pytest.param("(open comment a@evil.test", "From does not parse", id="open-comment"),
        pytest.param("a@evil.test)", "From does not parse", id="close-comment"),
        pytest.param('"a\\', "From does not parse", id="trailing-backslash"),
        pytest.param("a\\@evil.test", "From does not parse", id="bare-backslash"),
        pytest.param("a@evil.test\x00@good.test", "From does not parse", id="nul"),
        pytest.param("a@good.test\x00", "From does not parse", id="nul-at-end"),
        pytest.param("Jo\ufffd <a@good.test>", "From does not parse", id="fffd"),
        pytest.param("a@good.test\x1b", "From does not parse", id="escape"),
        pytest.param("a@good.test\x85", "From does not parse", id="c1-control"),
        pytest.param("a@@evil.test", "From does not parse", id="double-at"),
        pytest.param("a@b@evil.test", "From does not parse", id="two-ats"),
        pytest.param("@evil.test", "From does not parse", id="no-local"),
        pytest.param("a@", "From does not parse", id="no-domain-after-at"),
        pytest.param("a@evil..test", "From does not parse", id="empty-label"),
        pytest.param("a@.evil.test", "From does not parse", id="leading-dot"),
        pytest.param("a@evil.test..", "From does not parse", id="two-trailing-dots"),
        pytest.param("a@ev!l.test", "From does not parse", id="not-a-hostname"),
        pytest.param("a@" + "x" * 64 + ".test", "From does not parse", id="long-label"),
        pytest.param("a@" + "x." * 127 + "test", "From does not parse", id="long-name"),
        pytest.param("<@route.test:a@evil.test>", "From does not parse", id="source-route"),
        pytest.param("Smith, John <j@good.test>", "From does not parse", id="unquoted-comma"),
        pytest.param('"x" joe@good.test', "From does not parse", id="name-without-angles"),
        pytest.param(". <a@good.test>", "From does not parse", id="dot-name"),
        pytest.param("a@evil.test, x", "From does not parse", id="second-unparsable"),
        pytest.param("undisclosed", "From has no domain", id="local-only"),
        pytest.param("Joe <joe>", "From has no domain", id="angle-local-only"),
        pytest.param("a@[192.0.2.1]", "From has no domain", id="address-literal"),
        pytest.param("a@[192.0.2.1", "From does not parse", id="open-literal"),
        pytest.param("a@\u200b.test", "From does not parse", id="zero-width-label"),
    ],
)
def test_malformed_from_is_a_problem(value: str, problem: str) -> None:
    assert author(from_field(value)) == problem


def test_no_from_field() -> None:
    assert author(Message.from_text([("Subject", "hi")])) == "no From field"
    assert author(Message()) == "no From field"


def test_several_from_fields_even_when_equal() -> None:
    assert author(from_field("a@good.test", "a@good.test")) == "several From fields"


def test_field_name_is_case_insensitive() -> None:
    message = Message.from_text([("FROM", "a@good.test"), ("from", "b@evil.test")])
    assert author(message) == "several From fields"
    assert author(Message.from_text([("fRoM", "a@Good.Test")])) == Author(
        "a@Good.Test", "good.test"
    )


def test_raw_bytes_that_are_not_utf8_do_not_parse() -> None:
    message = Message.from_raw([(b"From", b" J\xf6rg <j@good.test>")])
    assert author(message) == "From does not parse"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("ex_ample.com", "ex_ample.com"),
        ("", None),
        (".", None),
        ("a..b", None),
        ("exa mple.com", None),
        ("x" * 64 + ".com", None),
    ],
)
def test_normalise_domain(text: str, expected: str | None) -> None:
    assert normalise_domain(text) == expected


def _valid(result: Author | str) -> bool:
    if isinstance(result, str):
        return result in PROBLEMS
    domain = result.domain
    return domain == domain.lower() and domain.isascii() and not domain.endswith(".")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(value: str) -> None:
    assert _valid(author(from_field(value)))


SPECIAL_HEAVY = st.text(alphabet='<>@,.:;()[]"\\ \t\r\nab\x00\ufffdé', max_size=60)


@settings(max_examples=500, deadline=None)
@given(st.lists(SPECIAL_HEAVY, max_size=3))
def test_arbitrary_structure_never_raises(values: list[str]) -> None:
    result = author(from_field(*values))
    assert _valid(result)
    if isinstance(result, Author):
        assert len(values) == 1 and "@" in values[0]


LABEL = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    local=st.from_regex(r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,20}", fullmatch=True),
    labels=st.lists(LABEL, min_size=1, max_size=4),
    name=st.sampled_from(["", "Joe ", '"Doe, Joe" ', "(c) ", "=?utf-8?q?x?= "]),
)
def test_well_formed_mailboxes_give_their_domain(local: str, labels: list[str], name: str) -> None:
    domain = ".".join(labels)
    value = f"{name}<{local}@{domain}>" if name else f"{local}@{domain}"
    assert author(from_field(value)) == Author(f"{local}@{domain}", domain.lower())
