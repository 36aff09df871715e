"""Run mxguard as a real process on a loopback TCP socket and speak the milter protocol to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.milterclient import MtaClient
from tests.support.mxguard_proc import MxguardProcess, free_port

BASE_CONFIG = {
    "milter": {
        "hostnames": "mx.example.test",
        "local_domains": "example.test",
        "trusted_networks": "192.0.2.0/24",
        "authserv_id": "mx.example.test",
    },
    # Nothing listens there. These tests are about the adapter, so the checks that ask DNS
    # are off (tests/unit and tests/e2e run them against real DNS servers).
    "dns": {"nameservers": "127.0.0.1:9", "timeout": "1s"},
    "rdns": {"enabled": "no"},
    "spf": {"enabled": "no"},
    "sender": {"enabled": "no"},
}


def start_mxguard(tmp_path: Path, extra: dict[str, dict[str, str]] | None = None) -> MxguardProcess:
    """Start mxguard with BASE_CONFIG plus ``extra`` sections."""
    config = {section: dict(values) for section, values in BASE_CONFIG.items()}
    config["milter"]["socket"] = f"inet:{free_port()}@127.0.0.1"
    config["state"] = {"url": f"sqlite:///{tmp_path}/state.db"}
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    return MxguardProcess(config, work_dir=tmp_path).start()


@pytest.fixture(scope="module")
def mxguard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MxguardProcess]:
    """mxguard in enforce mode, shared by a module's tests (a stop takes libmilter ~5 s)."""
    process = start_mxguard(tmp_path_factory.mktemp("mxguard"))
    yield process
    process.stop()


def client_for(process: MxguardProcess) -> MtaClient:
    """A negotiated MTA-side connection to ``process``."""
    host, port = (
        process.socket.split(":")[1].split("@")[1],
        int(process.socket.split(":")[1].split("@")[0]),
    )
    client = MtaClient.connect_to(host, port)
    client.negotiate()
    return client
