"""What each check costs per transaction, in-process, with a warm DNS cache.

Runs one outside client's transaction (connect, HELO, MAIL, one RCPT, end of message with the
benchmark's DKIM-signed message and 5 KB body) through a pipeline holding one check at a time,
against the test DNS server with bench/zones.txt, and prints microseconds of CPU per
transaction. The DNS cache is warmed first, as in a busy MX; each transaction gets a fresh
per-connection DNS view, as in the milter. The last row, "adapter", is the whole transaction
through the pymilter adapter (facts, pipeline, log lines, header edits) with a stand-in for
libmilter's context: what the milter's Python costs per transaction besides libmilter itself.

    .venv/bin/python bench/check_costs.py [--transactions 3000]
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import logging
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

import Milter  # noqa: E402
from tests.support.dnsserver import TestDnsServer  # noqa: E402
from tests.support.milterctx import FakeContext  # noqa: E402

from harness.workload import add_dkim_record, make_body, make_dkim_key, make_transaction  # noqa: E402
from mxguard import config  # noqa: E402
from mxguard.checks import ALL_CHECKS  # noqa: E402
from mxguard.core.facts import Connection, Envelope, Facts, Message, Recipient, Stage  # noqa: E402
from mxguard.core.pipeline import Pipeline  # noqa: E402
from mxguard.daemon.adapter import MxguardMilter  # noqa: E402
from mxguard.daemon.runtime import RuntimeHolder, build_runtime  # noqa: E402
from mxguard.mail.address import parse_path  # noqa: E402

CLIENT = Connection(
    client_ip=ipaddress.ip_address("203.0.113.25"),
    client_name="mail.sender.test",
    helo="mail.sender.test",
    interface_ip=ipaddress.ip_address("192.0.2.25"),
    mta_name="mx.example.test",
)
ENVELOPE = Envelope("<someone@sender.test>", parse_path("<someone@sender.test>"))
RECIPIENT = Recipient("<alice@example.test>", parse_path("<alice@example.test>"))


def bench_message(work: Path) -> tuple[Message, tuple[bytes, str] | None]:
    """The benchmark's message as the adapter builds it, and its DKIM key (None: no openssl)."""
    key = make_dkim_key(work)
    body = make_body(5000)
    txn = make_transaction(1, (("alice@example.test", 250),), body, key)
    raw = [(n.encode(), (" " + v).encode()) for n, v in txn.headers]
    return Message.from_raw(raw, body), key


def adapter_transaction(holder: RuntimeHolder, message: Message) -> None:
    """One transaction through the adapter, callback by callback, as libmilter calls it."""
    milter = MxguardMilter(holder)
    milter._setctx(FakeContext({"j": "mx.example.test", "{daemon_name}": "mx", "i": "4XQ"}))
    milter.negotiate([Milter.CURR_ACTS, 0x1FFFFF, 0, 0])
    milter.connect("mail.sender.test", socket.AF_INET, ("203.0.113.25", 40000))
    milter.hello("mail.sender.test")
    milter.envfrom("<someone@sender.test>")
    milter.envrcpt("<alice@example.test>")
    for name, value in message.raw_headers:
        milter.header(name.decode(), value)
    milter.body(message.body)
    if milter.eom() != Milter.CONTINUE:
        raise RuntimeError("the benchmark transaction was refused")


def transaction(pipeline: Pipeline, runtime, message: Message) -> None:
    """One transaction through every stage, with a fresh per-connection DNS view."""
    services = runtime.services()
    earlier: tuple = ()
    steps = [
        Facts(Stage.CONNECT, CLIENT),
        Facts(Stage.HELO, CLIENT),
        Facts(Stage.MAIL, CLIENT, ENVELOPE),
        Facts(Stage.RCPT, CLIENT, ENVELOPE, RECIPIENT),
        Facts(Stage.EOM, CLIENT, ENVELOPE, None, message),
    ]
    for facts in steps:
        if pipeline.wants(facts.stage):
            facts = Facts(
                facts.stage,
                facts.connection,
                facts.envelope,
                facts.recipient,
                facts.message,
                earlier,
            )
            earlier += pipeline.run(facts.stage, facts, services).verdicts


def main(argv: list[str] | None = None) -> int:
    """Time each check alone, and all of them together."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=3000)
    args = parser.parse_args(argv)
    zones = (ROOT / "bench" / "zones.txt").read_text()
    with TestDnsServer(zones) as dns, tempfile.TemporaryDirectory(prefix="mxguard-costs-") as work:
        message, key = bench_message(Path(work))
        if key is not None:
            add_dkim_record(dns, key[1])
        settings = config.load(
            "bench.ini",
            text=(
                "[milter]\nlocal_domains = example.test\nhostnames = mx.example.test\n"
                "trusted_networks = 192.0.2.0/24\n"
                f"[dns]\nnameservers = {dns.address}\n"
                f"[state]\nurl = sqlite:///{work}/state.db\n"
                "[dnsbl]\nzones = zen.bench.test=3, bl.bench.test=1\nthreshold = 3\n"
                "[rhsbl]\nzones = dbl.bench.test=3\nthreshold = 3\n"
            ),
        )
        runtime = build_runtime(settings)
        rows = [(c.name, Pipeline([(c, settings.checks[c.name])])) for c in ALL_CHECKS]
        rows.append(("all", runtime.pipeline))
        holder = RuntimeHolder(runtime)
        logging.getLogger("mxguard").setLevel(logging.WARNING)  # as the benchmark runs it
        print(f"{'check':10} {'us/transaction':>15}")
        for name, pipeline in [*rows, ("adapter", None)]:
            if pipeline is None:
                run_once = functools.partial(adapter_transaction, holder, message)
            else:
                run_once = functools.partial(transaction, pipeline, runtime, message)
            for _ in range(200):  # warm the DNS cache and the code
                run_once()
            started = time.process_time()
            for _ in range(args.transactions):
                run_once()
            cost = (time.process_time() - started) / args.transactions * 1e6
            print(f"{name:10} {cost:15.1f}")
        holder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
