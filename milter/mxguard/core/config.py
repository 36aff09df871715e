"""The INI schema and its loader: one INI file in, typed frozen settings out, or a ConfigError.

Every option is declared once, as a field of a settings class (see ``options.option``): the
core sections in ``sections`` and one class per check (next to the check's code). The loader
rejects unknown sections and options (with a "did you mean"), invalid values, and names the
file, section, option and what was expected. ``docgen`` renders the sample INI and the README's
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

from mxguard.checks import ALL_CHECKS
from mxguard.checks.dnsbl import DnsblSettings
from mxguard.core.check import Check
from mxguard.core.errors import ConfigError, ValueParseError
from mxguard.core.options import CheckSettings, Mode, OptionSpec, specs

# The section classes are re-exported (see __all__): callers name them as config.MilterSettings.
from mxguard.core.sections import (
    CORE_SECTIONS,
    DnsSettings,
    LogSettings,
    MetricsSettings,
    MilterSettings,
    StateSettings,
)

DEFAULT_PATH = "/etc/mxguard/mxguard.ini"


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
    "MetricsSettings",
    "MilterSettings",
    "OptionSpec",
    "Settings",
    "StateSettings",
    "effective_values",
    "load",
    "sections",
]
