"""How long the connect-time DNS work takes with a cold cache: parallel, not summed.

At connect mxguard asks every DNSBL zone and the client's PTR at once. This script gives the
test DNS server a fixed delay per answer (a distant authoritative server), then opens milter
connections from fresh client addresses (nothing cached) and times each from CONNECT to the
first reply the MTA waits for. With N questions of D ms each, parallel lookups take about D;
one after the other they would take N x D.

    .venv/bin/python bench/cold_connect.py [--zones 4] [--delay-ms 100] [--connections 20]
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import tempfile
import time
from pathlib import Path

from miltertest import constants as C

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.dnsserver import TestDnsServer  # noqa: E402
from tests.support.milterclient import MtaClient  # noqa: E402
from tests.support.mxguard_proc import MxguardProcess, free_port  # noqa: E402

# Fresh clients come from the benchmarking range (RFC 2544); none has a PTR: NXDOMAIN answers,
# cached afterwards, so every address is asked about once.
FIRST_CLIENT = ipaddress.ip_address("198.18.0.1")
ZONES = """
$ORIGIN .
$TTL 3600
@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 3600
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zones", type=int, default=4, help="DNSBL zones (default 4)")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="delay per DNS answer")
    parser.add_argument("--connections", type=int, default=20, help="fresh clients to time")
    return parser.parse_args(argv)


def time_connection(client: MtaClient, ip: str) -> float:
    """Seconds from CONNECT to the first reply the MTA waits for (MAIL's or RCPT's)."""
    client.negotiate()
    started = time.perf_counter()
    client.macros(C.SMFIC_CONNECT, j="mx.example.test")
    client.connect_step(ip, hostname=f"[{ip}]")
    client.helo("client.bench.test")
    reply = client.mail("<someone@sender.bench.test>") or client.rcpt("<alice@example.test>")
    elapsed = time.perf_counter() - started
    assert reply == (C.SMFIR_CONTINUE, {}), reply
    client.quit()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the figures."""
    args = parse_args(argv)
    delay = args.delay_ms / 1000
    zones = [f"z{i}.bench.test" for i in range(args.zones)]
    with tempfile.TemporaryDirectory(prefix="mxguard-cold-") as work, TestDnsServer(ZONES) as dns:
        port = free_port()
        mxguard = MxguardProcess(
            {
                "milter": {
                    "socket": f"inet:{port}@127.0.0.1",
                    "local_domains": "example.test",
                    "hostnames": "mx.example.test",
                    "trusted_networks": "192.0.2.0/24",
                },
                "dns": {"nameservers": dns.address, "timeout": "5s"},
                "dnsbl": {"zones": ", ".join(zones)},
                # Only the connect-time questions are measured: the MAIL FROM checks (with
                # their own, later questions) are off.
                "spf": {"enabled": "no"},
                "spoof": {"enabled": "no"},
                "sender": {"enabled": "no"},
                "state": {"url": f"sqlite:///{work}/state.db"},
                "log": {"level": "warning"},
            },
            work_dir=Path(work) / "mxguard",
        )
        with mxguard:
            dns.delay = delay
            timings = []
            for index in range(args.connections):
                ip = str(FIRST_CLIENT + index)
                client = MtaClient.connect_to("127.0.0.1", port)
                timings.append(time_connection(client, ip))
            asked = dns.count()
            dns.delay = 0.0
    questions = asked / args.connections  # every zone, and the PTR when rdns is on
    p50 = statistics.median(timings) * 1000
    worst = max(timings) * 1000
    print(
        f"cold connect: {args.connections} fresh clients, {questions:.0f} DNS questions each "
        f"({args.zones} DNSBL zones, and the PTR when rdns is on), "
        f"each answered after {args.delay_ms:.0f} ms"
    )
    print(f"  CONNECT to first reply: p50 {p50:.1f} ms, max {worst:.1f} ms")
    print(
        f"  slowest single lookup: {args.delay_ms:.0f} ms; all lookups one after another: "
        f"{questions * args.delay_ms:.0f} ms"
    )
    return 0 if p50 < 1.5 * args.delay_ms else 1


if __name__ == "__main__":
    sys.exit(main())
