"""Where mxguard's log goes: stderr (one readable line per event, for the service manager or a
terminal) or syslog (ident ``mxguard`` with the pid, facility ``mail`` by default, as
OpenDKIM and Postfix log)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

SYSLOG_SOCKET = "/dev/log"


def configure(level: str = "info", target: str = "stderr", facility: str = "mail") -> None:
    """Send mxguard's log to ``target`` at ``level``."""
    handler: logging.Handler
    problem = ""
    if target == "syslog" and os.path.exists(SYSLOG_SOCKET):
        handler = logging.handlers.SysLogHandler(
            address=SYSLOG_SOCKET,
            facility=logging.handlers.SysLogHandler.facility_names[facility],
        )
        handler.setFormatter(logging.Formatter("mxguard[%(process)d]: %(message)s"))
    else:
        if target == "syslog":
            problem = f"[log] target = syslog: no {SYSLOG_SOCKET}; logging to stderr"
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s mxguard[%(process)d] %(levelname)s %(name)s: %(message)s"
            )
        )
    root = logging.getLogger("mxguard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    if problem:
        root.warning(problem)
