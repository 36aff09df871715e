"""The milter socket on disk: its directory, a stale file from a crash, its mode and owner.

libmilter can remove an existing socket file before binding, but it cannot tell a stale one
(left by a crash) from one a running mxguard still listens on, and would take the latter over.
So the file is looked at here first: a socket that accepts a connection is in use and startup
stops; anything else at that path is removed.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from pathlib import Path

from mxguard.core.errors import ConfigError
from mxguard.daemon.statedir import writable_dir

log = logging.getLogger("mxguard")

SOCKET_MODE = 0o660  # the MTA reaches it through the group (postfix in group mxguard)
DIRECTORY_MODE = 0o750


def unix_path(spec: str) -> str | None:
    """The file of a ``unix:`` or ``local:`` socket, else None."""
    kind, _, rest = spec.partition(":")
    return rest if kind in ("unix", "local") else None


def runtime_fallback(path: str) -> str:
    """For an unprivileged run: the socket file name under $XDG_RUNTIME_DIR/mxguard (or
    /tmp/mxguard-UID), so ``make run`` works without root."""
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/mxguard-{os.getuid()}"
    return str(Path(base) / "mxguard" / Path(path).name)


def usable_spec(spec: str) -> str:
    """``spec``, or for a unix socket whose directory we cannot create or write while not
    root, the same socket in the per-user runtime directory (with a warning)."""
    path = unix_path(spec)
    if path is None or os.geteuid() == 0:
        return spec
    directory = Path(path).parent
    if writable_dir(directory, DIRECTORY_MODE):
        return spec
    replacement = runtime_fallback(path)
    log.warning("socket: %s is not writable; listening on unix:%s", directory, replacement)
    return "unix:" + replacement


def prepare(spec: str) -> bool:
    """Make the socket's directory (True when it had to be made), and remove a stale socket
    file; raise ConfigError when the directory cannot be made or a live process owns it."""
    path = unix_path(spec)
    if path is None:
        return False
    directory = Path(path).parent
    created = not directory.exists()
    try:
        directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"[milter] socket: cannot create the directory {directory}: {error.strerror}"
        ) from None
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return created
    except OSError as error:
        raise ConfigError(f"[milter] socket: cannot look at {path}: {error.strerror}") from None
    if stat.S_ISSOCK(mode) and _accepts(path):
        raise ConfigError(
            f"[milter] socket: {path} is in use by a running process (another mxguard?); "
            "not taking it over"
        )
    if stat.S_ISDIR(mode):
        raise ConfigError(f"[milter] socket: {path} is a directory")
    os.unlink(path)
    log.info("removed the stale socket %s", path)
    return created


def _accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def finish(spec: str, owner: tuple[int, int] | None, created_directory: bool) -> None:
    """Give the bound unix socket mode 0660 and, as root, the (uid, gid) it will run as; a
    directory made for it goes to them too (an existing one is the admin's to set)."""
    path = unix_path(spec)
    if path is None:
        return
    os.chmod(path, SOCKET_MODE)
    if os.geteuid() == 0 and owner is not None:
        os.chown(path, *owner)
        if created_directory:
            os.chown(Path(path).parent, *owner)


def identity(spec: str) -> tuple[int, int] | None:
    """(device, inode) of our bound unix socket file, to know it again at exit."""
    path = unix_path(spec)
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def withdraw(spec: str, opened: tuple[int, int] | None) -> None:
    """Remove our unix socket file: at a stop, so the MTA's next connection fails at once (and
    a new mxguard may bind there) while the transactions in flight finish, or when startup is
    abandoned. A file that is no longer the one we bound is left alone. A TCP socket stays
    open: new transactions on it are deferred (see InFlight)."""
    path = unix_path(spec)
    if path is None or opened is None:
        return
    try:
        info = os.stat(path)
        if (info.st_dev, info.st_ino) == opened:
            os.unlink(path)
    except OSError as error:
        log.debug("could not remove %s: %s", path, error)
