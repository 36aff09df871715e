"""The processes the benchmark runs beside its client: the DNS server, the floor, mxguard."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .protocol import Address
from .workload import MX_NAME, add_dkim_record

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = BENCH_DIR.parent
ZONES = BENCH_DIR / "zones.txt"
NOOP_MILTER = BENCH_DIR / "noop_milter.py"

# (name, MxguardProcess) of each milter, in the order they are measured.
Milters = list[tuple[str, Any]]


def import_support() -> None:
    """Make the repository's tests.support (DNS server, milter runner) importable.

    Its modules are imported where they are used, not at the top, so that the client
    processes, which import this package too, stay small."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def start_dns(stack: contextlib.ExitStack, dkim_txt: str | None) -> Any:
    """Start the DNS server with bench/zones.txt (and the DKIM key record, if any)."""
    from tests.support.dnsserver import TestDnsServer

    dns_server = stack.enter_context(TestDnsServer(ZONES.read_text()))
    if dkim_txt is not None:
        add_dkim_record(dns_server, dkim_txt)
    return dns_server


def start_milters(
    stack: contextlib.ExitStack, socket_kind: str, work_dir: Path, dns_address: str
) -> Milters:
    """Start the floor, then mxguard; ``stack`` stops both, even if one fails to start."""
    from tests.support.mxguard_proc import MxguardProcess

    floor = MxguardProcess(
        {"milter": {"socket": milter_socket(socket_kind, work_dir, "floor")}},
        work_dir=work_dir / "floor",
        command=[sys.executable, str(NOOP_MILTER), "{socket}"],
    )
    # Registered before start, and filled as we go: a failed start is still cleaned up.
    milters: Milters = [("floor", floor)]
    stack.callback(stop_milters, milters)
    floor.start()
    mxguard = MxguardProcess(
        mxguard_config(milter_socket(socket_kind, work_dir, "mxguard"), dns_address, work_dir),
        work_dir=work_dir / "mxguard",
        command=mxguard_command(),
    )
    milters.append(("mxguard", mxguard))
    mxguard.start()
    return milters


def stop_milters(milters: Sequence[tuple[str, Any]]) -> None:
    """SIGTERM every milter at once, then wait for each (libmilter takes up to ~5 s to
    notice), killing what does not stop."""
    for _, process in milters:
        if process.alive():
            with contextlib.suppress(ProcessLookupError):
                process.proc.send_signal(signal.SIGTERM)
    for _, process in milters:
        process.stop(timeout=10)


def mxguard_command() -> list[str]:
    """``.venv/bin/mxguard run -c {ini}`` next to this Python, else ``python -m mxguard``."""
    script = Path(sys.executable).with_name("mxguard")
    if script.exists():
        return [str(script), "run", "-c", "{ini}"]
    return [sys.executable, "-m", "mxguard", "run", "-c", "{ini}"]


def mxguard_config(
    socket_spec: str, dns_address: str, state_dir: Path
) -> dict[str, dict[str, str]]:
    """mxguard's INI: every check on (at its defaults, two DNSBL zones); the client is outside."""
    return {
        "milter": {
            "socket": socket_spec,
            "local_domains": "example.test",
            "hostnames": MX_NAME,
            "trusted_networks": "192.0.2.0/24",
        },
        "dns": {"nameservers": dns_address},
        # Two blocklists (not listing the client: NXDOMAIN, cached like the real DNS).
        "dnsbl": {"zones": "zen.bench.test=3, bl.bench.test=1", "threshold": "3"},
        "rhsbl": {"zones": "dbl.bench.test=3", "threshold": "3"},
        "state": {"url": f"sqlite:///{state_dir / 'state.db'}"},
        "log": {"level": "warning"},
    }


def milter_socket(kind: str, work_dir: Path, name: str) -> str:
    """A libmilter socket spec: a free loopback TCP port, or a unix socket in work_dir."""
    if kind == "unix":
        return f"unix:{work_dir / f'{name}.sock'}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return f"inet:{probe.getsockname()[1]}@127.0.0.1"


def socket_address(socket_spec: str) -> Address:
    """Where to connect for an ``inet:PORT@HOST`` or ``unix:/path`` milter socket."""
    kind, _, rest = socket_spec.partition(":")
    if kind == "unix":
        return rest
    port, _, host = rest.partition("@")
    return host, int(port)
