"""Transactions in flight, so that a stop can let them finish (bounded) before mxguard exits."""

from __future__ import annotations

import threading


class InFlight:
    """Counts transactions between MAIL FROM and their end; once draining, refuses new ones."""

    def __init__(self) -> None:
        self._count = 0
        self._draining = False
        self._changed = threading.Condition()

    def begin(self) -> bool:
        """Count one more transaction; False while draining (the adapter then defers it)."""
        with self._changed:
            if self._draining:
                return False
            self._count += 1
            return True

    def end(self) -> None:
        """One transaction ended (end of message, abort, or the connection closed)."""
        with self._changed:
            self._count = max(0, self._count - 1)
            self._changed.notify_all()

    def drain(self, timeout: float) -> int:
        """Refuse new transactions, wait up to ``timeout`` seconds for the running ones to end,
        and return how many are still running."""
        with self._changed:
            self._draining = True
            self._changed.wait_for(lambda: self._count == 0, timeout)
            return self._count

    @property
    def count(self) -> int:
        """Transactions running now."""
        with self._changed:
            return self._count
