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

from mxguard.core import config
from mxguard.daemon.sockets import unix_path
from mxguard.tools.doctor_milters import check_milters
from mxguard.tools.doctor_params import check_protocol, check_timeouts, postconf
from mxguard.tools.doctor_probes import Probe, check_answer, check_socket, check_target
from mxguard.tools.doctor_report import Finding, report
from mxguard.tools.milterprobe import Address, negotiate
from mxguard.tools.postfixview import PostconfError, Service, master_services, milter_address


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


# The CLI and the tests call these as doctor.NAME, wherever they are defined.
__all__ = [
    "Finding",
    "PostconfError",
    "Probe",
    "check_answer",
    "check_milters",
    "check_protocol",
    "check_socket",
    "check_target",
    "check_timeouts",
    "check_wiring",
    "diagnose",
    "postconf",
    "report",
]
