"""Log to stderr, one readable line per event (the service manager or terminal collects it)."""

from __future__ import annotations

import logging
import sys


def configure(level: str = "info") -> None:
    """Send mxguard's log to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s mxguard[%(process)d] %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("mxguard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
