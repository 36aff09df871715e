"""Two mxguard processes sharing one Redis: what one learns, the other knows."""

from __future__ import annotations

import time
from pathlib import Path

from miltertest import constants as C

from tests.support.redisserver import RedisServer

from .conftest import start_mxguard
from .test_protocol import open_transaction


def test_greylist_triplets_are_shared_between_mx_hosts(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    shared = {
        "state": {"url": redis_server.url},
        "greylist": {"enabled": "yes", "delay": "1s", "expire": "1h"},
    }
    first = start_mxguard(tmp_path / "mx1", shared)
    second = start_mxguard(tmp_path / "mx2", shared)
    try:
        client = open_transaction(first)
        deferred = client.rcpt("<alice@example.test>")
        assert deferred[1]["smtpcode"] == "451", deferred
        assert deferred[1]["text"].startswith("4.7.1 greylist:"), deferred
        client.quit()

        time.sleep(1.2)
        # The retry reaches the other MX host: it knows the triplet from the shared store.
        client = open_transaction(second)
        assert client.rcpt("<alice@example.test>") == (C.SMFIR_CONTINUE, {})
        client.quit()
    finally:
        first.stop()
        second.stop()
