"""``mxguard doctor``'s check of the milter lists: does every smtpd and cleanup service of
master.cf name mxguard's socket (in main.cf or its own -o override), in a way that leads to the
socket from its chroot? Each problem comes with the postconf command (and INI change) that fixes
it."""

from __future__ import annotations

from os.path import lexists
from pathlib import PurePosixPath

from mxguard.core import config
from mxguard.daemon.sockets import unix_path
from mxguard.tools.doctor_report import Finding
from mxguard.tools.milterprobe import Address
from mxguard.tools.postfixview import (
    DEFAULT_QUEUE,
    MILTER_PARAMETER,
    Service,
    Use,
    find_use,
    inside,
    milter_entries,
    names_socket,
    postfix_name,
    smtpd_milters_value,
)

# What a service that cannot reach its milter does to mail, by milter_default_action.
CONSEQUENCE = {
    "tempfail": "every message gets 451 4.7.1",
    "accept": "mail passes unfiltered",
    "reject": "every message is refused",
    "quarantine": "every message goes to the hold queue",
    "shutdown": "every session is cut",
}


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
