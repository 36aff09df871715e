"""Where state that outlives a connection is kept, with a fallback for unprivileged runs."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TypeVar

from mxguard.core.errors import ConfigError

SettingsT = TypeVar("SettingsT")

log = logging.getLogger("mxguard.state")

SQLITE_PREFIX = "sqlite:///"


def writable_dir(directory: Path, mode: int = 0o777) -> bool:
    """Make ``directory`` if it is missing; True when we can create files in it."""
    try:
        directory.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


def fallback_dir() -> Path:
    """The per-user state directory: $XDG_STATE_HOME/mxguard or ~/.local/state/mxguard."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mxguard"


def effective_state_url(url: str) -> str:
    """``url``, or for an SQLite file whose directory we cannot write, the same file name in
    the per-user state directory (so ``make run`` works without root); ConfigError when that
    cannot be written either."""
    if not url.startswith(SQLITE_PREFIX):
        return url
    path = Path(url[len(SQLITE_PREFIX) :])
    if writable_dir(path.parent):
        return url
    directory = fallback_dir()
    if not writable_dir(directory):
        raise ConfigError(
            f"[state] url: expected a directory mxguard can write, but neither {path.parent} "
            f"nor the per-user fallback {directory} is writable"
        )
    replacement = SQLITE_PREFIX + str(directory / path.name)
    log.warning("state: %s is not writable; using %s", path.parent, replacement)
    return replacement


def with_usable_state(settings: SettingsT) -> SettingsT:
    """``settings`` with its [state] url replaced by :func:`effective_state_url` (at start and
    at every reload alike)."""
    state = settings.state  # type: ignore[attr-defined]
    usable = dataclasses.replace(state, url=effective_state_url(state.url))
    return dataclasses.replace(settings, state=usable)  # type: ignore[type-var]


def give_to(url: str, owner: tuple[int, int] | None) -> None:
    """As root, before dropping to ``owner`` (uid, gid): hand it the SQLite state directory
    and files when root still owns them (one made by mxguard itself, as root)."""
    if owner is None or os.geteuid() != 0 or not url.startswith(SQLITE_PREFIX):
        return
    path = Path(url[len(SQLITE_PREFIX) :])
    for candidate in (path.parent, *path.parent.glob(path.name + "*")):
        try:
            if candidate.stat().st_uid == 0:
                os.chown(candidate, *owner)
        except OSError as error:
            log.warning("state: cannot give %s to the milter user: %s", candidate, error)
