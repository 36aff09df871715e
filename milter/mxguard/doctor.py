"""``mxguard doctor``: read Postfix's own settings and the socket, and say what is wrong, with
the fix. Exit status 1 when something is wrong, 0 when all is well.

Postfix is asked with ``postconf -h -x`` (``-c DIR`` for another instance), so what is checked
is what Postfix will use: defaults included, ``$name`` expanded. master.cf is read too
(``postconf -F``, ``-P -x``): every smtpd service and every cleanup service (which runs
non_smtpd_milters) is checked with its own milter list and as it sees the socket from its
chroot, and the socket is asked for a milter option negotiation, so "ok" means mxguard
answered where Postfix will look for it.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from os.path import lexists
from pathlib import Path, PurePosixPath

from . import config
from .milterprobe import DENIED, Address, Answer, negotiate
from .postfixview import (
    DEFAULT_QUEUE,
    MILTER_PARAMETER,
    PostconfError,
    Service,
    Use,
    find_use,
    inside,
    master_services,
    milter_address,
    milter_entries,
    names_socket,
    postfix_name,
    run_postconf,
    smtpd_milters_value,
)
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
    "config_directory",
    "mail_version",
    "mail_owner",
    *NEEDED_MACROS,
)
# What a service that cannot reach its milter does to mail, by milter_default_action.
CONSEQUENCE = {
    "tempfail": "every message gets 451 4.7.1",
    "accept": "mail passes unfiltered",
    "reject": "every message is refused",
    "quarantine": "every message goes to the hold queue",
    "shutdown": "every session is cut",
}

Probe = Callable[[Address], Answer]


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: ``ok`` or a problem with its fix."""

    ok: bool
    text: str
    fix: str = ""
    note: bool = False  # worth knowing, not wrong


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


def _queue(values: dict[str, str]) -> str:
    """Postfix's queue_directory (Debian's when postconf gave none)."""
    return values.get("queue_directory") or DEFAULT_QUEUE


def _describe(service: Service, queue_directory: str) -> str:
    """How the report names a service: ``smtp/inet (smtpd, chrooted in /var/spool/postfix)``."""
    chroot = f", chrooted in {queue_directory}" if service.chroot else ""
    return f"{service.name} ({service.command}{chroot})"


def _reachable(settings: config.Settings, queue_directory: str, chroot: bool) -> tuple[str, str]:
    """The milter entry a service should use, and the change to the INI it needs first ('' when
    none): a chrooted service reaches only a socket inside the queue directory."""
    spec = settings.milter.socket
    path = unix_path(spec)
    if path is None or not chroot or inside(path, queue_directory):
        return smtpd_milters_value(spec, queue_directory), ""
    directory = PurePosixPath(queue_directory) / "mxguard"
    moved = f"unix:{directory / PurePosixPath(path).name}"
    step = f"[milter] socket = {moved} in {settings.path} (restart mxguard)"
    user = settings.milter.user
    if user:
        # mxguard runs as this user and cannot create a directory in the queue directory.
        step = f"install -d -o {user} -g {user} -m 0750 {directory}; {step}"
    return smtpd_milters_value(moved, queue_directory), step


def _set(parameter: str, value: str, service: Service | None = None) -> str:
    """The postconf command that sets a milter list in main.cf, or a service's -o override."""
    if service is not None and service.override:
        # postconf -P takes no whitespace in a value.
        return f"postconf -P '{service.name}/{parameter}={','.join(milter_entries(value))}'"
    return f"postconf -e '{parameter} = {value}'"


def _added(value: str, entry: str) -> str:
    """A milter list with ``entry`` appended (other milters stay the admin's to keep)."""
    return f"{value}, {entry}" if value.strip() else entry


def _consequence(values: dict[str, str], command: str) -> str:
    """What mail meets while a service cannot reach mxguard."""
    action = values.get("milter_default_action", "")
    if command == "cleanup":
        return f"mail from sendmail(1) meets milter_default_action = {action}"
    return CONSEQUENCE.get(action, f"milter_default_action = {action} applies")


def _not_named(
    settings: config.Settings, values: dict[str, str], parameter: str, clients: list[Service]
) -> Finding:
    """No service of this kind names our socket: a problem for smtpd, a note for cleanup."""
    spec, queue = settings.milter.socket, _queue(values)
    value = values.get(parameter, "")
    text = f"{parameter} = {value!r} does not name {spec}"
    overriding = [service.name for service in clients if service.override]
    if overriding:
        text += f" (nor does -o {parameter} of {', '.join(overriding)} in master.cf)"
    if parameter == "non_smtpd_milters":
        # Not wrong: mail submitted with sendmail(1) then bypasses mxguard (no signing).
        if names_socket(values.get("smtpd_milters", ""), spec, queue):
            fix = _set(parameter, "$smtpd_milters")
        else:
            fix = _set(parameter, _added(value, _reachable(settings, queue, False)[0]))
        return Finding(True, text + " (local submissions are not signed)", fix, True)
    entry, ini = _reachable(settings, queue, any(service.chroot for service in clients))
    fix = _set(parameter, _added(value, entry))
    if ini:
        text += "; a chrooted smtpd cannot reach a socket outside the queue directory"
        fix = f"{ini}; {fix}; postfix reload"
    return Finding(False, text, fix)


def _bypass(settings: config.Settings, values: dict[str, str], service: Service) -> Finding:
    """A note: this service's own list leaves mxguard out, while others use it."""
    spec, queue, parameter = settings.milter.socket, _queue(values), service.parameter
    where = " (-o in master.cf)" if service.override else ""
    text = (
        f"{_describe(service, queue)}: {parameter} = {service.milters!r}{where} does not name "
        f"{spec}: mail through it bypasses mxguard"
    )
    if service.override and names_socket(values.get(parameter, ""), spec, queue):
        return Finding(True, text, f"postconf -PX '{service.name}/{parameter}'", True)
    entry, ini = _reachable(settings, queue, service.chroot)
    fix = _set(parameter, _added(service.milters, entry), service)
    return Finding(True, text, f"{ini}; {fix}" if ini else fix, True)


def _lost(settings: config.Settings, values: dict[str, str], use: Use) -> Finding:
    """The service names our socket, but from where it runs the name leads to no file."""
    queue, service = _queue(values), use.service
    text = (
        f"{_describe(service, queue)}: {service.parameter} names {use.entry}, which it opens "
        f"as {use.target}: no such file ({_consequence(values, service.command)})"
    )
    entry, ini = _reachable(settings, queue, service.chroot)
    fix = _set(service.parameter, service.milters.replace(use.entry, entry), service)
    if _follows_smtpd(service, values):
        fix = f"the smtpd_milters fix, with non_smtpd_milters = $smtpd_milters (else {fix})"
        return Finding(False, text, fix)
    return Finding(False, text, "; ".join(step for step in (ini, fix, "postfix reload") if step))


def _follows_smtpd(service: Service, values: dict[str, str]) -> bool:
    """Is this cleanup's list main.cf's smtpd_milters (as with the README's
    ``non_smtpd_milters = $smtpd_milters``), so that fixing smtpd_milters fixes it too?"""
    return (
        service.command == "cleanup"
        and not service.override
        and service.milters == values.get("smtpd_milters")
    )


def check_milters(
    settings: config.Settings, values: dict[str, str], services: list[Service]
) -> tuple[list[Finding], list[Address]]:
    """Does every smtpd (and cleanup) service name mxguard's socket in its own milter list, in
    a way that leads to it from its chroot? Also returns the sockets these services open."""
    spec, queue = settings.milter.socket, _queue(values)
    ours = unix_path(spec)
    ours = str(PurePosixPath(ours)) if ours else None
    found: list[Finding] = []
    targets: list[Address] = []
    for command, parameter in MILTER_PARAMETER.items():
        clients = [service for service in services if service.command == command]
        uses = [find_use(service, spec, queue) for service in clients]
        if command == "smtpd" and not clients:
            found.append(Finding(False, "master.cf runs no smtpd service: no mail comes in"))
            continue
        if not any(uses):
            found.append(_not_named(settings, values, parameter, clients))
            continue
        for service, use in zip(clients, uses, strict=True):
            if use is None:
                found.append(_bypass(settings, values, service))
            elif isinstance(use.target, str) and use.target != ours and not lexists(use.target):
                found.append(_lost(settings, values, use))
            else:
                found.append(Finding(True, f"{_describe(service, queue)}: {parameter} names "
                                     f"mxguard's socket, {_shown(use)}"))  # fmt: skip
                if use.target not in targets:
                    targets.append(use.target)
    return found, targets


def _shown(use: Use) -> str:
    """The entry, and the file it leads to when that is not what it says."""
    opened = postfix_name(use.target)
    return use.entry if opened == use.entry else f"{use.entry} = {opened.partition(':')[2]}"


def check_socket(path: str, values: dict[str, str]) -> list[Finding]:
    """Is there a socket, and can the Postfix user reach it (group membership and mode)?"""
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
    if not stat.S_ISSOCK(info.st_mode):
        return [Finding(False, f"{path} is not a socket", "check [milter] socket")]

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


def check_answer(target: Address, probe: Probe = negotiate, aside: str = "") -> Finding:
    """Does mxguard complete a milter option negotiation there?"""
    answer = probe(target)
    if answer.ok:
        return Finding(True, f"mxguard answered a milter negotiation on {postfix_name(target)} "
                       f"(protocol version {answer.version}){aside}")  # fmt: skip
    if answer.nobody:
        fix = "systemctl start mxguard (journalctl -u mxguard tells why it stopped)"
    elif answer.reason == DENIED:
        fix = "run mxguard doctor as root (or as a member of the socket's group)"
    else:
        fix = "is it mxguard? [milter] socket and the Postfix entry must name one socket"
    return Finding(
        False, f"no milter negotiation on {postfix_name(target)}: {answer.reason}{aside}", fix
    )


def check_target(target: Address, values: dict[str, str], probe: Probe) -> list[Finding]:
    """The socket file as Postfix's user meets it (when it is a file), then the negotiation."""
    if not isinstance(target, str):
        return [check_answer(target, probe)]
    found = check_socket(target, values)
    if not _is_socket(target):
        return found  # missing, or not a socket: nothing to negotiate with
    return [*found, check_answer(target, probe)]


def _is_socket(path: str) -> bool:
    """Whether ``path`` exists and is a socket."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


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


def _own_target(settings: config.Settings) -> Address:
    """mxguard's socket as it opens it: the file, or (host, port)."""
    spec = settings.milter.socket
    return unix_path(spec) or milter_address(spec) or spec


def check_wiring(
    settings: config.Settings, values: dict[str, str], services: list[Service], probe: Probe
) -> list[Finding]:
    """The services' milter lists, then every socket they open; when none opens ours,
    mxguard's own socket, so that the report still says whether mxguard answers."""
    found, targets = check_milters(settings, values, services)
    for target in targets:
        found += check_target(target, values, probe)
    if not targets:
        found.append(check_answer(_own_target(settings), probe, "; no Postfix service opens it"))
    return found


def diagnose(
    settings: config.Settings,
    values: dict[str, str],
    services: list[Service] | None = None,
    probe: Probe = negotiate,
) -> list[Finding]:
    """Every finding, in the order the report lists them; master.cf's services are read with
    postconf (from values' config_directory) unless given."""
    try:
        if services is None:
            services = master_services(values.get("config_directory") or None, values)
        wiring = check_wiring(settings, values, services, probe)
    except PostconfError as error:
        wiring = [
            Finding(False, f"cannot read master.cf: {error}", "is master.cf readable?"),
            check_answer(_own_target(settings), probe),
        ]
    return [*wiring, *check_protocol(values), *check_timeouts(settings, values)]


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
