"""Authentication-Results and X-MXGuard: what we write and which incoming fields we remove."""

from __future__ import annotations

import authres
import pytest

from mxguard.core.verdict import Action, AuthResult, Verdict, passed, reject, tag
from mxguard.daemon.trace_fields import (
    authentication_results,
    claims_authserv_id,
    forged_fields,
    trace_header,
)


@pytest.mark.parametrize(
    ("value", "ours"),
    [
        pytest.param("mx.example.org; spf=pass", True, id="plain"),
        pytest.param("MX.Example.ORG; none", True, id="case"),
        pytest.param("  mx.example.org 1; dkim=pass", True, id="version"),
        pytest.param("(forged) mx.example.org; spf=pass", True, id="comment-first"),
        pytest.param("mx.example.org.evil; spf=pass", False, id="longer"),
        pytest.param("other.example; spf=pass mx.example.org", False, id="elsewhere"),
        pytest.param("", False, id="empty"),
        pytest.param(";;;", False, id="garbage"),
    ],
)
def test_claims_authserv_id(value: str, ours: bool) -> None:
    assert claims_authserv_id(value, "mx.example.org") is ours


def test_forged_fields_are_indexed_per_name() -> None:
    headers = [
        ("Received", "x"),
        ("Authentication-Results", "other.example; spf=pass"),
        ("authentication-results", "mx.example.org; spf=pass"),
        ("X-MXGuard", "mx.example.org; none"),
        ("Authentication-Results", "mx.example.org; dkim=pass"),
    ]
    assert forged_fields(headers, "mx.example.org") == [
        ("authentication-results", 2),
        ("X-MXGuard", 1),
        ("Authentication-Results", 3),
    ]


def test_authentication_results_lists_every_method() -> None:
    verdicts = [
        passed(
            "spf",
            "pass",
            auth=(AuthResult("spf", "pass", properties=(("smtp", "mailfrom", "a@example.net"),)),),
        ),
        tag("rdns", "none", "no PTR", auth=(AuthResult("iprev", "fail", "no PTR"),)),
        reject("relay", "x", "y"),
    ]
    value = authentication_results("mx.example.org", verdicts)
    parsed = authres.AuthenticationResultsHeader.parse_value(value)
    assert parsed.authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in parsed.results] == [("spf", "pass"), ("iprev", "fail")]
    assert value.startswith("mx.example.org; spf=pass smtp.mailfrom=a@example.net")


def test_authentication_results_without_methods_says_none() -> None:
    assert authentication_results("mx.example.org", []) == "mx.example.org; none"


def test_trace_header_shows_tags_and_monitor_mode() -> None:
    verdicts = [
        tag("rdns", "dynamic", "looks like a consumer line"),
        reject("relay", "percent-hack", "percent hack\r\nInjected: yes").as_monitored(),
        passed("spf", "pass"),
    ]
    value = trace_header("mx.example.org", verdicts)
    assert value.startswith("mx.example.org; rdns.dynamic=tag (looks like a consumer line); ")
    assert "relay.percent-hack=would-reject (percent hack??Injected: yes)" in value
    assert "\r" not in value and "\n" not in value
    assert "spf" not in value


def test_verdict_refuses() -> None:
    assert reject("a", "b", "c").refuses
    assert not tag("a", "b", "c").refuses
    monitored = reject("a", "b", "c").as_monitored()
    assert monitored.action is Action.TAG and not monitored.refuses
    assert isinstance(monitored, Verdict) and monitored.monitored is Action.REJECT
