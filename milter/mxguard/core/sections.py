"""The core sections of the INI schema: one frozen settings class per daemon section ([milter],
[dns], [state], [log], [metrics]), each option declared once as a field (see ``options.option``).

The checks declare their own sections next to their code; ``config`` joins both into the schema
it loads and ``docgen`` renders, in the order of ``CORE_SECTIONS`` then ``ALL_CHECKS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mxguard.checks import ALL_CHECKS
from mxguard.core.errors import ValueParseError
from mxguard.core.facts import IPAddress
from mxguard.core.options import (
    BOOL,
    DOMAINS,
    DURATION,
    INT,
    MODE,
    NAMESERVERS,
    NETWORKS,
    SOCKET,
    STRING,
    WORDS,
    IPNetwork,
    Mode,
    ValueType,
    choice,
    option,
)
from mxguard.mail.domains import within


def _parse_state_url(text: str) -> str:
    text = text.strip()
    if text.startswith("sqlite:///") and len(text) > len("sqlite:///"):
        return text
    if text.startswith(("redis://", "rediss://", "unix://")):
        return text
    raise ValueParseError(text)


STATE_URL = ValueType(
    "url",
    "sqlite:///relative/path, sqlite:////absolute/path or redis://host:port/db",
    _parse_state_url,
)


@dataclass(frozen=True, slots=True)
class MilterSettings:
    """Options of [milter]: how mxguard attaches to the MTA, and what is ours."""

    socket: str = option(
        "unix:/run/mxguard/mxguard.sock",
        "where the MTA connects to mxguard; mode 0660, group of [milter] user",
        SOCKET,
        restart=True,
    )
    mode: Mode = option(
        "enforce", "enforce, or monitor (log and tag what would be refused, never refuse)", MODE
    )
    hostnames: tuple[str, ...] = option("", "names this MTA answers as", DOMAINS)
    local_domains: tuple[str, ...] = option(
        "", "domains we receive mail for; empty: the relay check cannot tell", DOMAINS
    )
    trusted_networks: tuple[IPNetwork, ...] = option(
        "127.0.0.0/8, ::1/128", "our own relays and internal clients", NETWORKS
    )
    submission_daemons: tuple[str, ...] = option(
        "submission", "{daemon_name} values that mean the port-587 listener", WORDS
    )
    authserv_id: str = option(
        "",
        "id in Authentication-Results; empty: the first hostname, else this host's name",
        STRING,
    )
    user: str = option(
        "mxguard",
        "run as this user and its groups once the socket is open (when started as root)",
        STRING,
        restart=True,
    )
    order: tuple[str, ...] = option(
        ", ".join(check.name for check in ALL_CHECKS),
        "the order in which the checks of a stage run; unlisted checks run last",
        WORDS,
    )
    # Postfix itself gives up after milter_content_timeout (300s by default); a connection
    # silent longer than that is dead, and it holds one of libmilter's threads meanwhile.
    timeout: float = option(
        "10m", "drop an MTA connection that stays silent this long", DURATION, restart=True
    )
    stop_timeout: float = option(
        "10s",
        "on SIGTERM, how long transactions in flight may take to finish before mxguard exits",
        DURATION,
    )

    def trusts(self, ip: IPAddress | None) -> bool:
        """True when ``ip`` is in trusted_networks (its mail skips the inbound checks)."""
        return ip is not None and any(ip in network for network in self.trusted_networks)

    def receives_for(self, domain: str) -> bool:
        """True when ``domain`` is exactly one we receive mail for (local_domains or hostnames):
        the relay rule, where a subdomain of ours is somebody else's until it is listed."""
        return domain in self.local_domains or domain in self.hostnames

    def our_domain(self, domain: str) -> str:
        """The entry of local_domains or hostnames that ``domain`` is or is a subdomain of,
        else "": the forgery rule, where ``mail.example.org`` claims ``example.org``."""
        return within(domain, (*self.local_domains, *self.hostnames))


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """Options of [dns]."""

    nameservers: tuple[tuple[str, int], ...] = option(
        "", "empty: the system resolver; else IP or IP:port, comma-separated", NAMESERVERS
    )
    timeout: float = option("3s", "how long one lookup may take", DURATION)
    cache_size: int = option("10000", "answers kept in the LRU cache (0: no cache)", INT)


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Options of [state]."""

    url: str = option(
        "sqlite:////var/lib/mxguard/state.db",
        "state that outlives a connection: sqlite:////path/state.db or redis://host:6379/0",
        STATE_URL,
    )


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Options of [log]."""

    target: str = option(
        "stderr",
        "stderr (the service manager collects it) or syslog (/dev/log, ident mxguard, with pid)",
        choice("stderr", "syslog"),
    )
    facility: str = option(
        "mail",
        "syslog facility",
        choice("mail", "daemon", "user", *(f"local{n}" for n in range(8))),
    )
    level: str = option(
        "info",
        "debug, info (every refusal and tag), warning or error",
        choice("debug", "info", "warning", "error"),
    )
    log_accepts: bool = option("yes", "also log one line per accepted message", BOOL)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Options of [metrics]."""

    port: int = option(
        "0",
        "serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: off); counts by stage, check, "
        "action and DNS outcome, never by domain or address",
        INT,
        restart=True,
    )


CORE_SECTIONS: dict[str, tuple[type, str]] = {
    "milter": (MilterSettings, "how mxguard attaches to the MTA, and what is ours"),
    "dns": (DnsSettings, "the resolver every check uses"),
    "state": (StateSettings, "where state that outlives a connection is kept"),
    "log": (LogSettings, "what is logged, and where"),
    "metrics": (MetricsSettings, "Prometheus metrics, off by default"),
}

__all__ = [
    "CORE_SECTIONS",
    "STATE_URL",
    "DnsSettings",
    "LogSettings",
    "MetricsSettings",
    "MilterSettings",
    "StateSettings",
]
