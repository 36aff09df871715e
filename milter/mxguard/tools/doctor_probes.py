"""``mxguard doctor``'s live probes: whether Postfix's user can reach a socket file, and whether
mxguard completes a milter option negotiation there."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable
from pathlib import Path

from mxguard.tools.doctor_report import Finding
from mxguard.tools.milterprobe import DENIED, Address, Answer, negotiate
from mxguard.tools.postfixview import postfix_name

Probe = Callable[[Address], Answer]


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
