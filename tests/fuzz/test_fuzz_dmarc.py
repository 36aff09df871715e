"""Fuzz DMARC: parse_record raises DmarcRecordError only; discovery and evaluation never raise."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from mxguard.mail import dmarc

from .conftest import PROFILE
from .strategies import texts

FUZZ = settings.get_profile(PROFILE)

STATUSES = frozenset({"found", "none", "temperror", "permerror"})
RESULTS = frozenset({"pass", "fail", "none", "temperror", "permerror"})

SEEDS = (
    "v=DMARC1; p=none; rf=afrf; rua=mailto:dmarc-a@abuse.net; ruf=mailto:dmarc-f@abuse.net",
    "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=50; fo=1:d; ri=3600",
    "v=DMARC1; p=bob; rua=mailto:reports@example.com!10m",
    "V = DMARC1 ;P=Quarantine;pct=007",
    "v=DMARC1",
    "v=spf1 -all",
    "v=DMARC1; p=none; sp=bob;",
    "v=DMARC1; pct=100;",
)
TOKENS = ("v=DMARC1", ";", "=", "p=", "sp=", "pct=", "rua=", "mailto:", "!", ",", " ", "\t")
# Author domains as author() hands them over: lower-case A-labels, no trailing dot.
AUTHOR_DOMAINS = (
    "example.com",
    "mail.example.com",
    "a.b.example.co.uk",
    "co.uk",
    "com",
    "user.github.io",
    "xn--bcher-kva.example",
    "localhost",
)
# SPF and DKIM domains: a DKIM d= is whatever the signer wrote.
OTHER_DOMAINS = (*AUTHOR_DOMAINS, "EXAMPLE.COM.", ".example.com", "", "ü.example", "\ud800")


def check_parse_record(text: str) -> None:
    """parse_record returns a DmarcRecord with valid policies, or raises DmarcRecordError."""
    try:
        record = dmarc.parse_record(text)
    except dmarc.DmarcRecordError:
        return
    assert isinstance(record, dmarc.DmarcRecord), record
    assert record.p in dmarc.POLICIES and record.sp in dmarc.POLICIES, record
    assert record.adkim in ("r", "s") and record.aspf in ("r", "s"), record
    assert isinstance(record.pct, int) and 0 <= record.pct <= 100, record


def check_is_dmarc_record(text: str) -> None:
    """is_dmarc_record answers a bool for any text."""
    assert isinstance(dmarc.is_dmarc_record(text), bool)


def check_policy(
    author_domain: str,
    answers: Sequence[Sequence[str] | None],
    spf_domains: Sequence[str],
    dkim_domains: Sequence[str],
    sample: int,
) -> None:
    """discover and evaluate, with TXT answers served in turn (None: DNS failed), never raise."""
    asked: list[str] = []

    def txt(name: str) -> Sequence[str] | None:
        asked.append(name)
        return answers[(len(asked) - 1) % len(answers)] if answers else []

    discovery = dmarc.discover(author_domain, txt)
    assert isinstance(discovery, dmarc.Discovery), discovery
    assert discovery.status in STATUSES, discovery
    assert (discovery.record is not None) == (discovery.status == "found"), discovery
    result = dmarc.evaluate(author_domain, discovery, spf_domains, dkim_domains, sample)
    assert isinstance(result, dmarc.DmarcResult), result
    assert result.result in RESULTS, result
    assert result.policy in dmarc.POLICIES, result


RECORDS = texts(SEEDS, TOKENS)


@FUZZ
@given(RECORDS)
def test_parse_record_raises_only_dmarc_record_error(text: str) -> None:
    check_parse_record(text)
    check_is_dmarc_record(text)


@FUZZ
@given(
    st.sampled_from(AUTHOR_DOMAINS),
    st.lists(st.one_of(st.none(), st.lists(RECORDS, max_size=3)), max_size=3),
    st.lists(st.one_of(st.sampled_from(OTHER_DOMAINS), texts()), max_size=2),
    st.lists(st.one_of(st.sampled_from(OTHER_DOMAINS), texts()), max_size=2),
    st.integers(min_value=0, max_value=99),
)
def test_discover_and_evaluate_never_raise(
    author_domain: str,
    answers: list[list[str] | None],
    spf_domains: list[str],
    dkim_domains: list[str],
    sample: int,
) -> None:
    check_policy(author_domain, answers, spf_domains, dkim_domains, sample)
