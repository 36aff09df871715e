"""RCPT checks behind the real Postfix: unknown recipients, and the directory-harvest lock-out."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.postfix import PostfixInstance

from .conftest import HARVESTER
from .test_postfix_e2e import HELO, SENDER

pytestmark = pytest.mark.usefixtures("requires_mxguard")


def rcpt_replies(mta: PostfixInstance, source: str, recipients: list[str]) -> list[tuple[int, str]]:
    """One SMTP session from ``source``: the reply to each RCPT."""
    with smtplib.SMTP(
        *mta.address, local_hostname=HELO, source_address=(source, 0), timeout=60
    ) as client:
        assert client.ehlo()[0] == 250
        assert client.mail(SENDER)[0] == 250
        return [(code, raw.decode()) for code, raw in (client.rcpt(r) for r in recipients)]


def test_harvester_is_locked_out_and_learns_nothing(mta: PostfixInstance) -> None:
    """Three unknown mailboxes, then every RCPT gets the same 450, in later sessions too."""
    probes = rcpt_replies(mta, HARVESTER, [f"guess{i}@example.test" for i in range(3)])
    assert [code for code, _ in probes] == [550, 550, 550], probes
    assert all(text.startswith("5.1.1 ") for _, text in probes), probes

    locked = rcpt_replies(mta, HARVESTER, ["alice@example.test", "guess9@example.test"])
    assert locked[0] == locked[1], f"a locked-out client must learn nothing: {locked}"
    assert locked[0][0] == 450 and locked[0][1].startswith("4.7.1 harvest:"), locked

    # Another client is not affected.
    others = rcpt_replies(mta, "127.0.0.1", ["alice@example.test"])
    assert others == [(250, "2.1.5 Ok")], others
