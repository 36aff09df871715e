"""Greylisting behind the real Postfix: the first attempt gets 451 4.7.1, a retry after the
delay is delivered. This module runs its own mxguard (with [greylist] on and a 2 s delay) and
its own Postfix, so no other test's mail is greylisted."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsserver import TestDnsServer
from tests.support.mxguard_proc import MxguardProcess, free_port
from tests.support.postfix import PostfixInstance

from .conftest import mxguard_config, running_mxguard, running_postfix
from .test_postfix_e2e import HELO, SENDER, by_message_id, make_message

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("requires_mxguard")]

DELAY = 2.0


@pytest.fixture(scope="module")
def greylist_mxguard(e2e_dir: Path, dns_server: TestDnsServer) -> Iterator[MxguardProcess]:
    """mxguard with greylisting on (delay 2 s), on its own port and state database."""
    work = e2e_dir / "greylist-mxguard"
    ini = mxguard_config(f"inet:{free_port()}@127.0.0.1", dns_server, work)
    ini["greylist"] = {"enabled": "yes", "delay": f"{DELAY:g}s"}
    with running_mxguard("mxguard (greylist)", ini, work) as process:
        yield process


@pytest.fixture(scope="module")
def greylist_postfix(e2e_dir: Path, greylist_mxguard: MxguardProcess) -> Iterator[PostfixInstance]:
    """A private Postfix whose milter is the greylisting mxguard."""
    base = e2e_dir / "greylist-postfix"
    with running_postfix("postfix (greylist)", base, greylist_mxguard.postfix_socket) as mta:
        yield mta


def attempt(postfix: PostfixInstance, data: bytes) -> tuple[int, str]:
    """One delivery attempt: the first reply that is not 2xx/3xx, or the reply to the dot."""
    with smtplib.SMTP(*postfix.address, local_hostname=HELO, timeout=30) as client:
        assert client.ehlo()[0] == 250
        code, raw = client.mail(SENDER)
        assert code == 250, raw.decode()
        code, raw = client.rcpt("alice@example.test")
        if code != 250:
            return code, raw.decode()
        code, raw = client.data(data)
        return code, raw.decode()


def test_first_attempt_deferred_and_retry_after_the_delay_delivered(
    greylist_postfix: PostfixInstance,
) -> None:
    """451 4.7.1 greylist: at RCPT, again before the delay; after it, delivered."""
    msgid, data = make_message("greylisted once")
    code, text = attempt(greylist_postfix, data)
    first = time.monotonic()
    assert code == 451, text
    assert text.startswith("4.7.1 greylist: greylisted, please try again in 2 seconds"), text

    code, text = attempt(greylist_postfix, data)
    assert code == 451 and text.startswith("4.7.1 greylist:"), f"early retry: {code} {text}"

    time.sleep(max(0.0, first + DELAY + 0.5 - time.monotonic()))
    code, text = attempt(greylist_postfix, data)
    assert code == 250, f"retry after the delay: {code} {text}"
    delivered = by_message_id(greylist_postfix.wait_for_delivery("alice", 1), msgid)
    assert len(delivered) == 1
