"""The INI schema and its loader: one INI file in, typed frozen settings out, or a ConfigError.

Every option is declared once, as a field of a settings class (see ``options.option``): the
core sections below and one class per check (next to the check's code). The loader rejects
unknown sections and options (with a "did you mean"), invalid values, and names the file,
section, option and what was expected. ``docgen`` renders the sample INI and the README's
reference from the same declarations.
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .check import Check
from .checks import ALL_CHECKS
from .checks.dnsbl import DnsblSettings
from .domains import within
from .errors import ConfigError, ValueParseError
from .facts import IPAddress
from .options import (
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
    CheckSettings,
    IPNetwork,
    Mode,
    OptionSpec,
    ValueType,
    choice,
    option,
    specs,
)

DEFAULT_PATH = "/etc/mxguard/mxguard.ini"


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


def sections() -> dict[str, tuple[type, str]]:
    """Every section of the schema, in file order: the core sections, then one per check."""
    result = dict(CORE_SECTIONS)
    for check in ALL_CHECKS:
        result[check.name] = (check.settings, check.summary)
    return result


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole validated configuration."""

    path: str
    milter: MilterSettings
    dns: DnsSettings
    state: StateSettings
    log: LogSettings
    metrics: MetricsSettings
    checks: Mapping[str, CheckSettings]

    def ordered_checks(self) -> list[tuple[Check, CheckSettings]]:
        """The enabled checks with their settings, in the configured order."""
        rank = {name: index for index, name in enumerate(self.milter.order)}
        ordered = sorted(
            ALL_CHECKS, key=lambda c: (rank.get(c.name, len(rank)), ALL_CHECKS.index(c))
        )
        return [(c, self.checks[c.name]) for c in ordered if self.checks[c.name].enabled]

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not what the admin wants; ``run`` logs them
        and ``check-config`` prints them."""
        milter = self.milter
        found = []
        if self.checks["relay"].enabled and not milter.local_domains:
            found.append(
                "[milter] local_domains is empty: the relay check refuses routing tricks only, "
                "not off-site domains"
            )
        if not milter.hostnames:
            found.append(
                "[milter] hostnames is empty: the helo and received checks cannot recognise a "
                "client that claims our name (helo still knows the MTA's own name), and "
                f"Authentication-Results are written as {milter.authserv_id}"
            )
        everyone = [str(net) for net in milter.trusted_networks if net.prefixlen == 0]
        if everyone:
            found.append(
                f"[milter] trusted_networks includes {', '.join(everyone)}: every client is "
                "trusted, so no inbound check ever runs"
            )
        dnsbl = self.checks["dnsbl"]
        if isinstance(dnsbl, DnsblSettings) and dnsbl.enabled and dnsbl.zones:
            weights = sum(zone.weight for zone in dnsbl.zones)
            if weights < dnsbl.threshold:
                found.append(
                    f"[dnsbl] threshold = {dnsbl.threshold} is more than the weights of all "
                    f"zones together ({weights}): the dnsbl check never refuses"
                )
        return found


def _suggest(word: str, choices: list[str], wrap: str = "'{}'") -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {wrap.format(close[0])}?" if close else ""


def _read(parser: configparser.ConfigParser, path: str, text: str | None) -> None:
    try:
        if text is None:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle, source=path)
        else:
            parser.read_string(text, source=path)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except configparser.DuplicateSectionError as error:
        raise ConfigError(
            f"{path}: line {error.lineno}: section [{error.section}] appears twice"
        ) from None
    except configparser.DuplicateOptionError as error:
        raise ConfigError(
            f"{path}: [{error.section}] {error.option}: set twice (line {error.lineno})"
        ) from None
    except configparser.MissingSectionHeaderError as error:
        raise ConfigError(
            f"{path}: line {error.lineno}: an option before any [section] header"
        ) from None
    except configparser.Error as error:
        raise ConfigError(f"{path}: {error.message}") from None


def _section_values(
    path: str, name: str, cls: type, raw: Mapping[str, str], problems: list[str]
) -> dict[str, Any]:
    known = {spec.name: spec for spec in specs(cls)}
    values: dict[str, Any] = {}
    for key, text in raw.items():
        spec = known.get(key)
        if spec is None:
            problems.append(f"{path}: [{name}] {key}: unknown option{_suggest(key, list(known))}")
            continue
        if "\x00" in text:  # no option has a use for it, and file paths cannot hold it
            problems.append(
                f"{path}: [{name}] {key}: expected {spec.kind.expected}, got a NUL byte"
            )
            continue
        try:
            values[key] = spec.kind.parse(text)
        except (ValueParseError, ValueError):
            problems.append(
                f"{path}: [{name}] {key}: expected {spec.kind.expected}, got {text.strip()!r}"
            )
    return values


def load(path: str = DEFAULT_PATH, text: str | None = None) -> Settings:
    """Read and validate the INI file at ``path`` (or ``text``, named ``path`` in messages)."""
    # A DEFAULT section would leak into every other section, so it is just another unknown name.
    parser = configparser.ConfigParser(
        interpolation=None,
        default_section="\x00no-default",
        strict=True,
        inline_comment_prefixes=(";", "#"),
        empty_lines_in_values=False,
    )
    parser.optionxform = str.lower  # type: ignore[assignment,method-assign]
    _read(parser, path, text)
    schema = sections()
    problems: list[str] = []
    parsed: dict[str, Any] = {}
    for name in parser.sections():
        if name not in schema:
            problems.append(
                f"{path}: [{name}]: unknown section{_suggest(name, list(schema), '[{}]')}"
            )
    for name, (cls, _doc) in schema.items():
        raw = dict(parser[name]) if parser.has_section(name) else {}
        parsed[name] = cls(**_section_values(path, name, cls, raw, problems))
    milter: MilterSettings = parsed["milter"]
    check_names = [check.name for check in ALL_CHECKS]
    for name in milter.order:
        if name not in check_names:
            problems.append(
                f"{path}: [milter] order: expected check names ({', '.join(check_names)}), "
                f"got {name!r}{_suggest(name, check_names)}"
            )
    for check in ALL_CHECKS:
        settings = parsed[check.name]
        if check.validate is not None and settings.enabled and not problems:
            for option_name, expected in check.validate(settings):
                problems.append(f"{path}: [{check.name}] {option_name}: {expected}")
    if problems:
        raise ConfigError("\n".join(problems))
    if not milter.authserv_id:
        fallback = milter.hostnames[0] if milter.hostnames else socket.getfqdn()
        milter = dataclasses.replace(milter, authserv_id=fallback)
    checks = {check.name: _inherit_mode(parsed[check.name], milter.mode) for check in ALL_CHECKS}
    return Settings(
        path=path,
        milter=milter,
        dns=parsed["dns"],
        state=parsed["state"],
        log=parsed["log"],
        metrics=parsed["metrics"],
        checks=MappingProxyType(checks),
    )


def _inherit_mode(settings: CheckSettings, mode: Mode) -> CheckSettings:
    return settings if settings.mode is not None else dataclasses.replace(settings, mode=mode)


def effective_values(settings: Settings, changed: bool = False) -> dict[str, dict[str, str]]:
    """Every option's effective value as INI text, by section, for ``check-config``; with
    ``changed``, only those that differ from their default, and only sections that have one
    (``postconf -n``)."""
    result: dict[str, dict[str, str]] = {}
    for name, (cls, _doc) in sections().items():
        values = settings.checks[name] if name in settings.checks else getattr(settings, name)
        texts = {spec.name: spec.kind.format(getattr(values, spec.name)) for spec in specs(cls)}
        if changed:
            texts = {
                option: text
                for option, text in texts.items()
                if text != _default_text(settings, name, option)
            }
            if not texts:
                continue
        result[name] = texts
    return result


def _default_text(settings: Settings, section: str, option: str) -> str:
    """What ``option`` of ``section`` would be without a line in the file, as INI text.

    Two defaults follow other options, and are compared as they follow them here: a check's
    empty mode is the [milter] mode, an empty authserv_id the first host name (else this
    host's name), so neither is reported as changed when it was never set."""
    if section in settings.checks and option == "mode":
        return str(settings.milter.mode)
    if (section, option) == ("milter", "authserv_id"):
        hostnames = settings.milter.hostnames
        return hostnames[0] if hostnames else socket.getfqdn()
    spec = next(spec for spec in specs(sections()[section][0]) if spec.name == option)
    return spec.kind.format(spec.kind.parse(spec.default_text))


__all__ = [
    "DEFAULT_PATH",
    "ConfigError",
    "DnsSettings",
    "LogSettings",
    "MilterSettings",
    "OptionSpec",
    "Settings",
    "StateSettings",
    "effective_values",
    "load",
    "sections",
]
