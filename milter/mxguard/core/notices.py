"""Warnings that must reach the admin without flooding the log: at most one per key per interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("mxguard.notice")


class Notices:
    """A throttled warning log shared by every connection of a process."""

    def __init__(self, clock: Callable[[], float], interval: float = 60.0) -> None:
        self._clock = clock
        self._interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def warn(self, key: str, message: str, *args: object) -> bool:
        """Log ``message`` unless ``key`` was logged less than the interval ago; True if logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                return False
            self._last[key] = now
        log.warning(message, *args)
        return True
