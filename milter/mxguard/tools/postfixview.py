"""How Postfix's services see mxguard's socket: which master.cf services talk to milters, with
which milter list (main.cf's, or their own ``-o`` override), chrooted or not, and the file a
``unix:`` milter name leads to.

A Postfix daemon works in its queue_directory, and a chrooted one has it as its root: a relative
``unix:mxguard/mxguard.sock`` is ``queue_directory/mxguard/mxguard.sock`` either way, while an
absolute ``unix:/run/...`` is looked up inside the chroot, as ``queue_directory/run/...``.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import PurePosixPath

from mxguard.daemon.sockets import unix_path
from mxguard.tools.milterprobe import Address

DEFAULT_QUEUE = "/var/spool/postfix"
# The daemons that connect to milters, and the parameter with their list: smtpd for mail that
# arrives by SMTP, cleanup for the rest (sendmail(1), pickup, qmqpd, postsuper -r).
MILTER_PARAMETER = {"smtpd": "smtpd_milters", "cleanup": "non_smtpd_milters"}
ANY_HOST = ("", "*", "0.0.0.0", "::", "[::]")


class PostconfError(Exception):
    """Postfix's settings could not be read."""


@dataclass(frozen=True, slots=True)
class Service:
    """A master.cf service that connects to milters, and the milter list it uses."""

    name: str  # service/type, as postconf -F and -P name it (smtp/inet)
    command: str  # smtpd or cleanup
    chroot: bool
    milters: str  # its smtpd_milters (smtpd) or non_smtpd_milters (cleanup), expanded
    override: bool = False  # set with -o in master.cf, not taken from main.cf

    @property
    def parameter(self) -> str:
        """The parameter that holds this service's milter list."""
        return MILTER_PARAMETER[self.command]


@dataclass(frozen=True, slots=True)
class Use:
    """A service's way to mxguard: the entry of its list that names our socket, and what it
    opens for it (the file as seen from outside its chroot, or host and port)."""

    service: Service
    entry: str
    target: Address


def run_postconf(argv: list[str], names: int = 0) -> str:
    """postconf's output (its warnings ignored); PostconfError when it cannot run or fails,
    naming the command without its last ``names`` arguments (parameter names)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PostconfError(f"cannot run {argv[0]}: {error}") from None
    if result.returncode != 0:
        problem = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise PostconfError(f"{' '.join(argv[: len(argv) - names])}: {problem[0]}")
    return result.stdout


def queue_directory(command: str = "postconf") -> str:
    """The installed Postfix's queue_directory; Debian's when Postfix cannot say (a host
    without Postfix, or a broken main.cf)."""
    config = os.environ.get("MAIL_CONFIG", "/etc/postfix")
    if not os.path.exists(os.path.join(config, "main.cf")):
        return DEFAULT_QUEUE  # postconf would only fail, after its one-second fatal pause
    try:
        value = run_postconf([command, "-h", "queue_directory"], 1).strip()
    except PostconfError:
        return DEFAULT_QUEUE
    return value if value.startswith("/") else DEFAULT_QUEUE


def master_services(
    config_dir: str | None, values: dict[str, str], command: str = "postconf"
) -> list[Service]:
    """The smtpd and cleanup services of master.cf (``postconf -F``, ``-P -x``)."""
    base = [command, *(["-c", config_dir] if config_dir else [])]
    fields = run_postconf([*base, "-F"])
    params = run_postconf([*base, "-P", "-x"])
    return parse_services(fields, params, values)


def _records(text: str) -> dict[str, dict[str, str]]:
    """``service/type/name = value`` lines as {service/type: {name: value}}."""
    records: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            service, _, name = key.strip().rpartition("/")
            records.setdefault(service, {})[name] = value.strip()
    return records


def parse_services(fields: str, params: str, values: dict[str, str]) -> list[Service]:
    """The services whose command is smtpd or cleanup, from ``postconf -F`` and ``postconf -P
    -x`` output; a service without its own ``-o`` list uses main.cf's (``values``)."""
    overrides = _records(params)
    services = []
    for name, field in _records(fields).items():
        words = field.get("command", "").split()
        command = PurePosixPath(words[0]).name if words else ""
        if command not in MILTER_PARAMETER:
            continue
        parameter = MILTER_PARAMETER[command]
        own = overrides.get(name, {}).get(parameter)
        chroot = _chrooted(field.get("chroot", "-"), values.get("mail_version", ""))
        milters = own if own is not None else values.get(parameter, "")
        services.append(Service(name, command, chroot, milters, own is not None))
    return services


def _chrooted(column: str, mail_version: str) -> bool:
    """master.cf's chroot column; ``-`` is n since Postfix 3.0 (y before, master(5))."""
    if column in ("y", "n"):
        return column == "y"
    major = mail_version.split(".")[0]
    return major.isdigit() and int(major) < 3


def milter_entries(value: str) -> list[str]:
    """The milter names in a Postfix milter list; a ``{ name, option=value }`` group (Postfix
    3.0) gives its first item."""
    entries: list[str] = []
    depth, group_start = 0, False
    for token in re.findall(r"[{}]|[^\s,{}]+", value):
        if token in "{}":
            depth += 1 if token == "{" else -1
            group_start = token == "{"
            continue
        if depth == 0 or group_start:
            entries.append(token)
        group_start = False
    return entries


def seen_path(name: str, queue_directory: str, chroot: bool) -> str:
    """The file (as seen from outside any chroot) that a service opens for ``unix:name``."""
    queue = PurePosixPath(queue_directory)
    if not name.startswith("/"):
        return str(queue / name)
    return str(queue / name.lstrip("/")) if chroot else str(PurePosixPath(name))


def inet_address(name: str) -> tuple[str, int] | None:
    """(host, port) of Postfix's ``host:port`` or ``[v6]:port``; None when it is not one."""
    host, sep, port = name.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def milter_address(spec: str) -> tuple[str, int] | None:
    """(host, port) of libmilter's ``inet:PORT@HOST`` / ``inet6:PORT@HOST``; a missing or
    wildcard host is the loopback address Postfix should use."""
    kind, _, rest = spec.partition(":")
    if kind not in ("inet", "inet6"):
        return None
    port, _, host = rest.partition("@")
    if host in ANY_HOST:
        host = "::1" if kind == "inet6" else "127.0.0.1"
    return (host.strip("[]"), int(port)) if port.isdigit() else None


def inside(path: str, queue_directory: str) -> str | None:
    """``path`` relative to the queue directory, or None when it lies outside."""
    queue, file = PurePosixPath(queue_directory), PurePosixPath(path)
    if queue == PurePosixPath("/") or not file.is_relative_to(queue) or file == queue:
        return None
    return str(file.relative_to(queue))


def smtpd_milters_value(spec: str, queue_directory: str = DEFAULT_QUEUE) -> str:
    """The ``smtpd_milters`` entry for mxguard's ``[milter] socket``: relative
    (``unix:mxguard/mxguard.sock``) for a socket in the queue directory, which a chrooted smtpd
    reaches too; else ``unix:/path``; ``inet:host:port`` for TCP."""
    path = unix_path(spec)
    if path is not None:
        relative = inside(path, queue_directory)
        return f"unix:{relative}" if relative else f"unix:{path}"
    address = milter_address(spec)
    return postfix_name(address) if address is not None else spec


def _same_address(entry: tuple[str, int], spec: str) -> bool:
    """Does Postfix's (host, port) lead to libmilter's ``inet:PORT@HOST``?"""
    ours = milter_address(spec)
    if ours is None or entry[1] != ours[1]:
        return False
    if spec.partition("@")[2] in ANY_HOST:  # listening on every address
        return True
    loopback = {"localhost": ours[0]} if ours[0] in ("127.0.0.1", "::1") else {}
    return loopback.get(entry[0], entry[0]) == ours[0]


def find_use(service: Service, spec: str, queue_directory: str) -> Use | None:
    """The entry of the service's milter list that means mxguard's socket (as named from inside
    or outside a chroot), and what this service opens for it; None when no entry does."""
    ours = unix_path(spec)
    for entry in milter_entries(service.milters):
        kind, _, name = entry.partition(":")
        if kind in ("unix", "local") and ours is not None:
            views = {seen_path(name, queue_directory, chroot) for chroot in (False, True)}
            if str(PurePosixPath(ours)) in views:
                return Use(service, entry, seen_path(name, queue_directory, service.chroot))
        elif kind == "inet" and (address := inet_address(name)) and _same_address(address, spec):
            return Use(service, entry, address)
    return None


def names_socket(value: str, spec: str, queue_directory: str) -> bool:
    """Does a milter list (main.cf's) name mxguard's socket?"""
    return find_use(Service("main.cf", "smtpd", False, value), spec, queue_directory) is not None


def postfix_name(target: Address) -> str:
    """A socket file or (host, port) the way Postfix writes it: unix:/path, inet:host:port."""
    if isinstance(target, str):
        return f"unix:{target}"
    host, port = target
    return f"inet:[{host}]:{port}" if ":" in host else f"inet:{host}:{port}"
