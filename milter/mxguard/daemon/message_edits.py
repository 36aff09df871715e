"""The changes made at end of message to mail that is accepted.

Forged Authentication-Results and X-MXGuard fields go first, then what the verdicts ask for
(header fields, quarantine, envelope changes), then our own two trace fields on top.
"""

from __future__ import annotations

from collections.abc import Sequence

import Milter

from mxguard.core.facts import Message
from mxguard.core.verdict import ChangeSender, Verdict
from mxguard.daemon.trace_fields import (
    AUTH_RESULTS,
    TRACE,
    authentication_results,
    forged_fields,
    trace_header,
)


def edit_message(
    milter: Milter.Base,
    message: Message,
    verdicts: Sequence[Verdict],
    authserv_id: str,
    leading_space: bool,
) -> None:
    """Apply the end-of-message edits through ``milter``; ``leading_space``: as negotiated."""
    # Highest index first, so each deletion leaves the other indexes valid.
    for name, index in reversed(forged_fields(message.headers, authserv_id)):
        milter.chgheader(name, index, "")
    for verdict in verdicts:
        for name, value in verdict.headers:
            add_header(milter, name, value, leading_space)
        if verdict.quarantine:
            milter.quarantine(verdict.quarantine)
        for edit in verdict.envelope:
            if isinstance(edit, ChangeSender):
                milter.chgfrom(edit.address)
            else:
                milter.delrcpt(edit.old)
                milter.addrcpt(edit.new)
    add_header(milter, TRACE, trace_header(authserv_id, verdicts), leading_space)
    add_header(milter, AUTH_RESULTS, authentication_results(authserv_id, verdicts), leading_space)


def add_header(milter: Milter.Base, name: str, value: str, leading_space: bool) -> None:
    """Insert a field at the top; with leading space negotiated, the value brings its own."""
    if leading_space:
        value = " " + value
    milter.addheader(name, value, 0)
