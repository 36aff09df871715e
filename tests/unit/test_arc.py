"""ARC: the ValiMail validation suite, and trusted sealers vouching for forwarded mail."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import dkim
import pytest
import yaml

from mxguard.checks import arc
from mxguard.core.dns import Found
from mxguard.core.facts import Connection, Facts, Message, Stage
from mxguard.core.findings import TrustedSealer
from tests.support.milterclient import split_message

from .fakes import FakeDns, decide, run_check, services
from .test_dkim import DATA as DKIM_DATA
from .test_dkim import crlf

SUITE = Path(__file__).resolve().parent.parent / "data" / "arc" / "arc-draft-validation-tests.yml"
# The suite's expected chain validation; "" (a chain an earlier sealer marked cv=fail) is a
# failed chain by RFC 8617 section 5.2.
EXPECTED = {"None": "none", "Pass": "pass", "Fail": "fail", "": "fail"}


def suite_cases() -> list[tuple[str, str, dict, str]]:
    cases = []
    with SUITE.open() as stream:
        for document in yaml.safe_load_all(stream):
            for name, test in document["tests"].items():
                message = test["message"] or ""
                cases.append((name, message, document["txt-records"], str(test["cv"])))
    return cases


def txt(record: str) -> Found:
    return Found(((record.encode(),),), 300)


def facts_for(message: bytes, **connection) -> Facts:
    connection.setdefault("client_ip", ipaddress.ip_address("192.0.2.1"))
    if b"\r\n\r\n" not in message:
        message += b"\r\n"
    return Facts(
        Stage.EOM, Connection(**connection), None, message=Message.from_raw(*split_message(message))
    )


@pytest.mark.parametrize(("name", "message", "records", "cv"), suite_cases())
def test_valimail_validation_suite(name: str, message: str, records: dict, cv: str) -> None:
    dns = FakeDns(answers={(n.lower(), "TXT"): txt(v) for n, v in records.items()})
    verdict = decide(
        arc.CHECK, facts_for(crlf(message.encode())), arc.ArcSettings(), services(dns=dns)
    )
    assert verdict is not None and not verdict.refuses
    assert [(a.method, a.result) for a in verdict.auth] == [("arc", EXPECTED[cv])]


# -- trusted sealers --------------------------------------------------------------------------

KEY = (DKIM_DATA / "test.private").read_bytes()
PUBLIC = (DKIM_DATA / "test.txt").read_text().strip()
ORIGINAL = crlf(
    b"From: Joe <joe@author.example>\nTo: list@lists.example\nSubject: [list] hi\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <1@author.example>\n\nHello.\n"
)


def sealed(aar: str, domain: bytes = b"lists.example") -> bytes:
    """ORIGINAL with one ARC set by ``domain``, whose sealed results are ``aar``."""
    message = b"Authentication-Results: lists.example; " + aar.encode() + b"\r\n" + ORIGINAL
    fields = dkim.arc_sign(message, b"test", domain, KEY, b"lists.example")
    return b"".join(fields) + ORIGINAL


def dns_for(domain: str = "lists.example") -> FakeDns:
    return FakeDns(answers={(f"test._domainkey.{domain}", "TXT"): txt(PUBLIC)})


TRUSTING = dataclasses.replace(arc.ArcSettings(), trusted_sealers=("lists.example",))


def test_trusted_sealer_that_saw_dmarc_pass_leaves_a_finding() -> None:
    facts = facts_for(sealed("dmarc=pass"))
    verdict, found = run_check(arc.CHECK, facts, TRUSTING, services(dns=dns_for()))
    assert verdict is not None and verdict.outcome == "arc.trusted-sealer"
    assert list(found) == [TrustedSealer("lists.example")]
    assert verdict.auth[0].result == "pass"


@pytest.mark.parametrize(
    ("aar", "vouches"),
    [
        ("dmarc=pass", True),
        ("dmarc=fail; dkim=pass header.d=author.example", False),  # its DMARC result decides
        ("dkim=pass header.d=author.example", True),
        ("spf=pass smtp.mailfrom=author.example", True),
        ("dkim=fail; spf=softfail", False),
        ("none", False),
    ],
)
def test_sealed_results_decide_whether_the_sealer_vouches(aar: str, vouches: bool) -> None:
    facts = facts_for(sealed(aar))
    verdict, found = run_check(arc.CHECK, facts, TRUSTING, services(dns=dns_for()))
    assert verdict is not None
    assert (found.known(TrustedSealer) is not None) is vouches


def test_untrusted_sealer_or_broken_chain_vouches_for_nothing() -> None:
    facts = facts_for(sealed("dmarc=pass"))
    untrusted, found = run_check(arc.CHECK, facts, arc.ArcSettings(), services(dns=dns_for()))
    assert untrusted is not None and len(found) == 0 and untrusted.outcome == "arc.pass"
    altered = sealed("dmarc=pass").replace(b"Hello.", b"Buy now.")
    broken, found = run_check(arc.CHECK, facts_for(altered), TRUSTING, services(dns=dns_for()))
    assert broken is not None and len(found) == 0 and broken.auth[0].result == "fail"


def test_sealed_results_parser_never_raises() -> None:
    assert arc.sealed_results(b"i=1; mx.example; dmarc=pass header.from=a.example") == {
        "dmarc": "pass"
    }
    for junk in (b"", b"i=1;", b"\x00\xff;;=", b"i=x; (((", "i=1; id; dkim=pass; dkim=fail"):
        assert isinstance(arc.sealed_results(junk), dict)


def test_exempt_clients_are_not_verified() -> None:
    assert (
        decide(arc.CHECK, facts_for(sealed("dmarc=pass"), trusted=True), TRUSTING, services())
        is None
    )
