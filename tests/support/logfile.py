"""Read the log files that test processes (Postfix, mxguard) write, from a remembered offset."""

from __future__ import annotations

from pathlib import Path


def read_from(path: Path, since: int = 0) -> str:
    """The text of ``path`` from byte offset ``since``; '' when it does not exist yet."""
    try:
        with path.open("rb") as handle:
            handle.seek(since)
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def size_of(path: Path) -> int:
    """The current size of ``path`` (0 when it does not exist), to pass to read_from later."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
