"""Trying mxguard from the MTA host (README, "Trying it from the MTA host"): with the default
``trusted_networks`` (loopback), mail sent from 127.0.0.1 skips every inbound check; with
Postfix's XCLIENT (``smtpd_authorized_xclient_hosts = 127.0.0.1``) the same connection from
127.0.0.1 is judged as the outside client it names. This module runs its own mxguard, with the
default trusted networks, and its own Postfix, which lets 127.0.0.1 send XCLIENT."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsserver import TestDnsServer
from tests.support.mxguard_proc import MxguardProcess, free_port
from tests.support.postfix import PostfixInstance

from .conftest import mxguard_config, running_mxguard
from .test_postfix_e2e import by_message_id, make_message

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("requires_mxguard")]

OUTSIDE = "203.0.113.5"  # forward-confirmed mail.example.net
OUTSIDE_NAME = "mail.example.net"
SENDER = "someone@example.net"  # example.net's SPF allows both clients
LISTED = "203.0.113.66"  # listed by dnsbl.test

# The outside world of this module, added to the session's test DNS (and removed after).
OUTSIDE_ZONES = f"""
example.net.               IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
example.net.               IN MX  10 {OUTSIDE_NAME}.
example.net.               IN TXT "v=spf1 ip4:{OUTSIDE} ip4:{LISTED} -all"
{OUTSIDE_NAME}.            IN A   {OUTSIDE}
113.0.203.in-addr.arpa.    IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
5.113.0.203.in-addr.arpa.  IN PTR {OUTSIDE_NAME}.
66.113.0.203.dnsbl.test.   IN A   127.0.0.2
"""


@pytest.fixture(scope="module")
def outside_dns(dns_server: TestDnsServer) -> Iterator[TestDnsServer]:
    """The session's test DNS, with example.net and the 203.0.113.0/24 clients in it."""
    records = dns_server.add(OUTSIDE_ZONES)
    yield dns_server
    for name in {str(record.rname) for record in records}:
        dns_server.remove(name)


@pytest.fixture(scope="module")
def loopback_trusting_mxguard(
    e2e_dir: Path, outside_dns: TestDnsServer
) -> Iterator[MxguardProcess]:
    """mxguard as installed: trusted_networks left at its default, loopback."""
    work = e2e_dir / "xclient-mxguard"
    ini = mxguard_config(f"inet:{free_port()}@127.0.0.1", outside_dns, work)
    del ini["milter"]["trusted_networks"]
    with running_mxguard("mxguard (xclient)", ini, work) as process:
        yield process


@pytest.fixture(scope="module")
def xclient_postfix(
    e2e_dir: Path, loopback_trusting_mxguard: MxguardProcess
) -> Iterator[PostfixInstance]:
    """A private Postfix that lets 127.0.0.1 name another client with XCLIENT."""
    instance = PostfixInstance(
        base_dir=e2e_dir / "xclient-postfix",
        milter=loopback_trusting_mxguard.postfix_socket,
        catchall="catchall",
        main_cf={"allow_untrusted_routing": "yes", "smtpd_authorized_xclient_hosts": "127.0.0.1"},
    )
    with instance:
        yield instance


def connect(mta: PostfixInstance, xclient: str | None) -> smtplib.SMTP:
    """An SMTP session from 127.0.0.1, as the client ``xclient`` names (``ADDR=… NAME=…``)."""
    client = smtplib.SMTP(*mta.address, local_hostname=OUTSIDE_NAME, timeout=60)
    assert client.ehlo()[0] == 250
    if xclient is not None:
        assert client.has_extn("xclient"), client.esmtp_features
        code, text = client.docmd("XCLIENT", xclient)
        assert code == 220, text  # a new greeting: the session starts again, EHLO first
        assert client.ehlo()[0] == 250
    return client


def delivered_results(mta: PostfixInstance, xclient: str | None, subject: str) -> str:
    """Send one message and return our Authentication-Results field of the delivered copy."""
    msgid, data = make_message(subject)
    delivered = len(mta.mailbox("alice"))  # the module's other tests deliver there too
    with connect(mta, xclient) as client:
        client.sendmail(SENDER, ["alice@example.test"], data)
    (message,) = by_message_id(mta.wait_for_delivery("alice", delivered + 1), msgid)
    ours = [str(v) for v in message.get_all("Authentication-Results", [])]
    return " ".join(ours[0].split())


def test_from_the_mta_host_every_inbound_check_is_skipped(xclient_postfix: PostfixInstance) -> None:
    """What a new admin sees with swaks from localhost: a trusted client, nothing judged."""
    results = delivered_results(xclient_postfix, None, "straight from localhost")
    assert results == "mx.example.test; none"


def test_with_xclient_the_named_outside_client_is_judged(
    xclient_postfix: PostfixInstance, loopback_trusting_mxguard: MxguardProcess
) -> None:
    """XCLIENT ADDR=203.0.113.5 NAME=mail.example.net: SPF and iprev for that client."""
    results = delivered_results(
        xclient_postfix, f"ADDR={OUTSIDE} NAME={OUTSIDE_NAME}", "through xclient"
    )
    assert "spf=pass smtp.mailfrom=someone@example.net" in results, results
    assert f"iprev=pass policy.iprev={OUTSIDE}" in results, results


def test_with_xclient_a_listed_client_is_refused_and_logged_as_postfix_does(
    xclient_postfix: PostfixInstance, loopback_trusting_mxguard: MxguardProcess
) -> None:
    """A refusal only an outside client can get: the DNSBL listing of the address XCLIENT
    names. Without a name (Postfix's "unknown"), the log says unknown[ip], as Postfix's does."""
    since = loopback_trusting_mxguard.log_size()
    with connect(xclient_postfix, f"ADDR={LISTED} NAME=[UNAVAILABLE]") as client:
        assert client.mail(SENDER)[0] == 250
        code, raw = client.rcpt("alice@example.test")
    assert code == 550, raw
    assert raw.decode() == f"5.7.1 dnsbl: {LISTED} listed by dnsbl.test"
    log = loopback_trusting_mxguard.log_text(since)
    assert (
        f"stage=rcpt check=dnsbl action=reject client=unknown[{LISTED}] from=<{SENDER}> "
        f'to=<alice@example.test> reason="dnsbl: {LISTED} listed by dnsbl.test"'
    ) in log
