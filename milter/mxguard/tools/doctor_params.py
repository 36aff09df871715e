"""``mxguard doctor``'s reading of main.cf: the parameters it asks postconf for, and the checks
of milter_protocol, milter_default_action, the macros mxguard reads and the milter timeouts."""

from __future__ import annotations

from mxguard.core import config
from mxguard.tools.doctor_report import Finding
from mxguard.tools.postfixview import PostconfError, run_postconf

# What mxguard reads, by the postconf parameter that delivers it.
NEEDED_MACROS = {
    "milter_connect_macros": ("{daemon_name}",),
    "milter_mail_macros": ("i", "{auth_authen}"),
    "milter_rcpt_macros": ("i",),
    "milter_end_of_data_macros": ("i",),
}
PARAMETERS = (
    "smtpd_milters",
    "non_smtpd_milters",
    "milter_protocol",
    "milter_default_action",
    "milter_command_timeout",
    "milter_content_timeout",
    "queue_directory",
    "config_directory",
    "mail_version",
    "mail_owner",
    *NEEDED_MACROS,
)


def postconf(config_dir: str | None, command: str = "postconf") -> dict[str, str]:
    """The values of PARAMETERS as Postfix sees them (defaults included, $name expanded);
    PostconfError when postconf cannot be run or cannot read the configuration."""
    argv = [command, *(["-c", config_dir] if config_dir else []), "-h", "-x", *PARAMETERS]
    lines = run_postconf(argv, len(PARAMETERS)).splitlines()
    if len(lines) != len(PARAMETERS):
        raise PostconfError(f"{' '.join(argv[: -len(PARAMETERS)])}: unexpected output")
    values = dict(zip(PARAMETERS, (line.strip() for line in lines), strict=True))
    if config_dir:
        # -c DIR is the instance; Postfix 3.10 reports its built-in config_directory
        # (/etc/postfix) for one whose main.cf does not set it, where 3.7 reported DIR.
        values["config_directory"] = config_dir
    return values


def _seconds(text: str) -> float:
    """A Postfix time value (30s, 2m, 1h; bare number: seconds)."""
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text or 0)


def _entries(value: str) -> list[str]:
    return [item for item in value.replace(",", " ").split() if item]


def check_protocol(values: dict[str, str]) -> list[Finding]:
    """milter_protocol, milter_default_action, and the macros mxguard reads."""
    found = []
    protocol = values.get("milter_protocol", "")
    if protocol.isdigit() and int(protocol) < 6:
        found.append(Finding(False, f"milter_protocol = {protocol}: mxguard needs 6 (no RCPT "
                             "rejections, no macro requests below it)",
                             "postconf -e 'milter_protocol = 6'"))  # fmt: skip
    else:
        found.append(Finding(True, f"milter_protocol = {protocol}"))
    action = values.get("milter_default_action", "")
    version = tuple(int(p) for p in values.get("mail_version", "0").split(".")[:2] if p.isdigit())
    if action == "tempfail":
        found.append(Finding(True, "milter_default_action = tempfail"))
    else:
        note = (
            " (the default since Postfix 3.11)"
            if action == "shutdown" and version >= (3, 11)
            else ""
        )
        found.append(Finding(False, f"milter_default_action = {action}{note}: while mxguard is "
                             "down, mail is " + ("accepted unfiltered" if action == "accept"
                             else "refused or the session cut" ),
                             "postconf -e 'milter_default_action = tempfail'"))  # fmt: skip
    for parameter, needed in NEEDED_MACROS.items():
        present = set(_entries(values.get(parameter, "")))
        missing = [macro for macro in needed if macro not in present]
        if missing:
            found.append(Finding(False, f"{parameter} lacks {' '.join(missing)}",
                                 f"postconf -e '{parameter} = {values.get(parameter, '')} "
                                 f"{' '.join(missing)}'"))  # fmt: skip
        else:
            found.append(Finding(True, f"{parameter} has {' '.join(needed)}"))
    return found


def check_timeouts(settings: config.Settings, values: dict[str, str]) -> list[Finding]:
    """Does the worst-case DNS time of a stage fit in Postfix's milter timeouts?"""
    dns = settings.dns.timeout
    spf = settings.checks["spf"].timeout if settings.checks["spf"].enabled else 0.0
    # The questions of a stage go out together: one DNS timeout per stage, plus at MAIL the
    # SPF evaluation's own bound (which already includes its lookups).
    worst = {"connect": dns, "mail": dns + spf, "rcpt": dns, "end of message": dns}
    command = _seconds(values.get("milter_command_timeout", "30s"))
    content = _seconds(values.get("milter_content_timeout", "300s"))
    found = []
    for stage, seconds in worst.items():
        limit = content if stage == "end of message" else command
        name = "milter_content_timeout" if stage == "end of message" else "milter_command_timeout"
        if seconds >= limit:
            found.append(Finding(False, f"worst case at {stage} is {seconds:g}s, not below "
                                 f"{name} = {limit:g}s: Postfix gives up first",
                                 f"postconf -e '{name} = {int(seconds) + 10}s', or lower "
                                 "[dns] timeout / [spf] timeout"))  # fmt: skip
    if not found:
        found.append(Finding(True, f"worst-case DNS time per stage ({max(worst.values()):g}s) "
                             f"fits milter_command_timeout ({command:g}s)"))  # fmt: skip
    return found
