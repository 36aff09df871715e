"""Opt-in Prometheus metrics on 127.0.0.1 ([metrics] port), with prometheus-client.

Labels are bounded sets only (stages, check names, actions, DNS outcomes): never a domain,
an address or a client, so the number of series cannot grow with the mail.

Until ``start`` is called the recording functions do nothing measurable: the counters exist
in a private registry that nobody serves.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

log = logging.getLogger("mxguard")

REGISTRY = CollectorRegistry(auto_describe=True)

TRANSACTIONS = Counter("mxguard_transactions", "Transactions (MAIL FROM) seen", registry=REGISTRY)
VERDICTS = Counter(
    "mxguard_verdicts",
    "Verdicts by stage, check and action (accept: a message passed every check)",
    ["stage", "check", "action"],
    registry=REGISTRY,
)
DNS_LOOKUPS = Histogram(
    "mxguard_dns_lookup_seconds",
    "DNS lookups sent to the servers (cache misses), by outcome",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
STORE_ERRORS = Counter(
    "mxguard_store_errors", "Failed operations on the state store", registry=REGISTRY
)
RELOADS = Counter("mxguard_reloads", "SIGUSR1 reloads, by result", ["result"], registry=REGISTRY)


def start(port: int, address: str = "127.0.0.1") -> bool:
    """Serve the metrics on ``address:port``; a port in use is logged and the milter runs on."""
    if not port:
        return False
    try:
        start_http_server(port, addr=address, registry=REGISTRY)
    except OSError as error:
        log.error(
            "metrics: cannot listen on %s:%d (%s); running without metrics",
            address,
            port,
            error.strerror,
        )
        return False
    log.info("metrics on http://%s:%d/metrics", address, port)
    return True
