"""Can the milter user read what mxguard needs, after the privilege drop?

Probes, as the current (dropped) user: the data files of the enabled checks, which are read
again on every reload, and the directories on the way to mxguard's own installation and the
interpreter's library, which a later import or an upgrade in place would need. Each finding is
one line naming the path to blame, for :mod:`selftest` to report.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import sys
from pathlib import Path

from mxguard.core.config import Settings, sections
from mxguard.core.options import PATH, PATHS, specs


def unreadable_files(settings: Settings, user: str) -> list[str]:
    """One line per data file of an enabled check that ``user`` cannot read."""
    problems = []
    for name, (cls, _doc) in sections().items():
        values = settings.checks.get(name)
        if values is None or not values.enabled:
            continue
        for spec in specs(cls):
            if spec.kind not in (PATH, PATHS):
                continue
            value = getattr(values, spec.name)
            for path in (value,) if spec.kind is PATH else value:
                if not path:
                    continue
                try:
                    with open(path, "rb"):
                        pass
                except FileNotFoundError:
                    continue  # the check itself reports a missing file, and works without it
                except OSError as error:
                    problems.append(
                        f"{settings.path}: [{name}] {spec.name}: {path}: user {user} cannot read "
                        f"it ({error.strerror}), and reads it again on every reload; fix: "
                        f"chgrp {group_name()} {path}; chmod g+r {path} (and let {user} enter its "
                        "directory)"
                    )
    return problems


def unreadable_install(first: str = "") -> str:
    """The first directory on the way to ``first`` (a file a failure named), to mxguard's
    own installation or to the interpreter's library that the current user cannot enter or
    read, with its mode and owner; '' when there is none."""
    targets = [first, os.path.dirname(__file__), sys.prefix, sys.base_prefix, *sys.path]
    for target in dict.fromkeys(targets):
        # os.path never raises, where pathlib does on a directory we may not enter.
        if not target or not os.path.isabs(target):
            continue
        blocked = _first_blocked(Path(os.path.normpath(target)))
        if blocked:
            return blocked
    return ""


def _first_blocked(target: Path) -> str:
    current = Path("/")
    for part in target.parts[1:]:
        current = current / part
        if not os.path.lexists(current):
            return ""  # its parent let us look: missing (a zip on sys.path), not blocked
        if not os.access(current, os.X_OK) or (
            current == target and not os.access(current, os.R_OK)
        ):
            try:
                info = os.stat(current)
                owner = pwd.getpwuid(info.st_uid).pw_name
                detail = f" (mode {stat.S_IMODE(info.st_mode):04o}, owner {owner})"
            except (OSError, KeyError):
                detail = ""
            suffix = "" if current == target else f" on the way to {target}"
            return f"{current}{detail}{suffix}"
    return ""


def group_name() -> str:
    """The current group's name, for the chgrp a fix suggests (its number if it has none)."""
    try:
        return grp.getgrgid(os.getegid()).gr_name
    except KeyError:
        return str(os.getegid())
