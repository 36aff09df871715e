"""``mxguard doctor``: read Postfix's own settings and the socket, and say what is wrong, with
the fix. Exit status 1 when something is wrong, 0 when all is well.

Postfix is asked with ``postconf -h`` (``-c DIR`` for another instance), so what is checked is
what Postfix will use, defaults included.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import config
from .sockets import unix_path

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
    "mail_version",
    "mail_owner",
    *NEEDED_MACROS,
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: ``ok`` or a problem with its fix."""

    ok: bool
    text: str
    fix: str = ""
    note: bool = False  # worth knowing, not wrong


class PostconfError(Exception):
    """Postfix's settings could not be read."""


def postconf(config_dir: str | None, command: str = "postconf") -> dict[str, str]:
    """The values of PARAMETERS as Postfix sees them (defaults included); PostconfError when
    postconf cannot be run or cannot read the configuration."""
    argv = [command, *(["-c", config_dir] if config_dir else []), "-h", *PARAMETERS]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PostconfError(f"cannot run {command}: {error}") from None
    lines = result.stdout.splitlines()
    if result.returncode != 0 or len(lines) != len(PARAMETERS):
        problem = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise PostconfError(f"{' '.join(argv[: -len(PARAMETERS)])}: {problem[0]}")
    return dict(zip(PARAMETERS, (line.strip() for line in lines), strict=True))


def _seconds(text: str) -> float:
    """A Postfix time value (30s, 2m, 1h; bare number: seconds)."""
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text or 0)


def _entries(value: str) -> list[str]:
    return [item for item in value.replace(",", " ").split() if item]


def postfix_names(spec: str, queue_directory: str) -> set[str]:
    """How main.cf may name our socket: unix:/path (and relative to the queue directory for
    a socket inside it), or inet:host:port."""
    path = unix_path(spec)
    if path is not None:
        names = {f"unix:{path}"}
        queue = queue_directory.rstrip("/") + "/"
        if queue != "/" and path.startswith(queue):
            names.add(f"unix:{path[len(queue) :]}")
        return names
    kind, _, rest = spec.partition(":")
    port, _, host = rest.partition("@")
    return {f"inet:{host.strip('[]')}:{port}", f"{kind}:{host.strip('[]')}:{port}"}


def check_milters(settings: config.Settings, values: dict[str, str]) -> list[Finding]:
    """Do smtpd_milters and non_smtpd_milters point at our socket (chroot case included)?"""
    spec = settings.milter.socket
    names = postfix_names(spec, values.get("queue_directory", ""))
    found = []
    for parameter in ("smtpd_milters", "non_smtpd_milters"):
        entries = _entries(values.get(parameter, ""))
        if any(entry in names for entry in entries):
            found.append(Finding(True, f"{parameter} names mxguard's socket"))
            continue
        preferred = sorted(names, key=len)[0]
        fix = f"postconf -e '{parameter} = {preferred}'"
        path = unix_path(spec)
        if path and not path.startswith(values.get("queue_directory", "/nonexistent") + "/"):
            fix += (
                "; a chrooted smtpd (Debian's default) cannot reach it outside the queue "
                "directory: use [milter] socket = unix:/var/spool/postfix/mxguard/mxguard.sock "
                "and smtpd_milters = unix:mxguard/mxguard.sock"
            )
        text = f"{parameter} = {values.get(parameter, '')!r} does not name {spec}"
        if parameter == "non_smtpd_milters":
            # Not wrong: mail submitted with sendmail(1) then bypasses mxguard (no signing).
            found.append(Finding(True, text + " (local submissions are not signed)", fix, True))
        else:
            found.append(Finding(False, text, fix))
    return found


def check_socket(settings: config.Settings, values: dict[str, str]) -> list[Finding]:
    """Can the Postfix user reach the socket (group membership and mode)?"""
    path = unix_path(settings.milter.socket)
    if path is None:
        return [Finding(True, "inet socket: no file permissions to check")]
    owner = values.get("mail_owner") or "postfix"
    try:
        user = pwd.getpwnam(owner)
    except KeyError:
        return [Finding(False, f"Postfix's mail_owner {owner!r} does not exist", "")]
    groups = set(os.getgrouplist(owner, user.pw_gid))
    try:
        info = os.stat(path)
        directory = os.stat(Path(path).parent)
    except OSError as error:
        return [Finding(False, f"socket {path}: {error.strerror} (is mxguard running?)",
                        "systemctl start mxguard")]  # fmt: skip

    def allowed(mode: int, uid: int, gid: int, user_bits: int, group_bits: int, other: int) -> bool:
        if user.pw_uid == uid:
            return mode & user_bits == user_bits
        if gid in groups:
            return mode & group_bits == group_bits
        return mode & other == other

    problems = []
    if not allowed(directory.st_mode, directory.st_uid, directory.st_gid,
                   stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):  # fmt: skip
        problems.append(f"{owner} cannot enter {Path(path).parent}")
    if not allowed(info.st_mode, info.st_uid, info.st_gid,
                   stat.S_IRUSR | stat.S_IWUSR, stat.S_IRGRP | stat.S_IWGRP,
                   stat.S_IROTH | stat.S_IWOTH):  # fmt: skip
        problems.append(f"{owner} cannot write to {path} (mode {stat.S_IMODE(info.st_mode):o})")
    if problems:
        group = grp.getgrgid(info.st_gid).gr_name
        return [Finding(False, "; ".join(problems), f"adduser {owner} {group}; postfix reload")]
    return [Finding(True, f"{owner} can reach {path}")]


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


def diagnose(settings: config.Settings, values: dict[str, str]) -> list[Finding]:
    """Every finding, in the order the report lists them."""
    return [
        *check_milters(settings, values),
        *check_socket(settings, values),
        *check_protocol(values),
        *check_timeouts(settings, values),
    ]


def report(findings: list[Finding]) -> int:
    """Print the findings; 1 when any is a problem."""
    for finding in findings:
        if finding.note:
            print(f"note     {finding.text}")
            print(f"         fix: {finding.fix}")
        elif finding.ok:
            print(f"ok       {finding.text}")
        else:
            print(f"PROBLEM  {finding.text}")
            if finding.fix:
                print(f"         fix: {finding.fix}")
    return 0 if all(finding.ok for finding in findings) else 1
