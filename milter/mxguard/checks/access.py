"""access - allow or deny by client address, client host name or sender, from access files.

Stage: MAIL. ``[access] files`` lists the files; they are read at start and at every reload.
Each line is ``KEY ACTION [TEXT]``; a line whose first non-blank character is ``#`` is a
comment (a ``#`` later in a line is part of TEXT, as in Postfix tables); blank lines are ignored.

* KEY ``192.0.2.7``, ``192.0.2.0/24``, ``2001:db8::/32``: the client's IP address.
* KEY ``example.com``: a client host name that is example.com or ends in .example.com (as
  Postfix does with parent_domain_matches_subdomains); ``.example.com``: only names ending in
  .example.com. A trailing dot is allowed. The name is the one the MTA verified
  (``{client_name}``); a client without one ("unknown", "[ip]") matches no host-name entry.
* KEY ``user@example.com`` (exactly this sender), ``user@`` (this local part at any domain),
  ``@example.com`` (any sender at exactly this domain): the MAIL FROM address, compared
  without regard to case. The null sender ``<>`` and senders at an address literal
  match no sender entry.
* ACTION ``allow`` or ``deny``, in any case. TEXT, the rest of the line, is the reply text of
  a deny (``access denied`` when there is none); for an allow it is noted in the log.

Which entry decides: the client address entries first, then the client host name, then the
sender; the first of these with a match decides (the client cannot forge its address, a
sender is easily forged, so a sender ``allow`` never overrides a client ``deny``). Within one
kind the most specific wins: the longest prefix, the longest host-name suffix, and for senders
the exact address, then ``user@``, then ``@domain``. At equal specificity ``deny`` wins.

``allow`` accepts and skips the inbound checks that follow (the relay check still runs, so an
allowed client never becomes an open relay). ``deny`` refuses with
``550 5.7.1 access: <text>``. The entries apply to every client, trusted ones included, except
that ``deny`` does not apply to clients that logged in with SMTP AUTH: a road-warrior user on
a listed network, or a denied sender address of our own, must still be able to submit.

A line that cannot be used, a key listed twice and an unreadable file are logged as warnings
(``file:line: what is wrong``); the rest still applies and mxguard runs on.

Outcomes: access.allow, access.deny.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from mxguard.core.check import Check, Exempt, Result, Services
from mxguard.core.facts import Facts, Stage
from mxguard.core.findings import Allowed
from mxguard.core.options import PATHS, CheckSettings, option
from mxguard.core.verdict import Verdict, allow, reject
from mxguard.mail import accesslist
from mxguard.mail.address import Mailbox

NAME = "access"
DEFAULT_TEXT = "access denied"

log = logging.getLogger("mxguard.access")


@dataclass(frozen=True, slots=True)
class AccessSettings(CheckSettings):
    """Options of [access]."""

    files: tuple[str, ...] = option(
        "",
        "access files, lines of KEY allow|deny [TEXT] (see README); a relative path is taken "
        "from mxguard's working directory",
        PATHS,
    )


@dataclass(frozen=True, slots=True)
class PreparedAccess:
    """The settings with the entries of their files, as the stage function gets them."""

    settings: AccessSettings
    table: accesslist.Table


def read_files(paths: Iterable[str]) -> tuple[accesslist.Table, tuple[str, ...]]:
    """The table of every readable file in ``paths``, and every problem found on the way."""
    entries: list[accesslist.Entry] = []
    problems: list[str] = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as error:
            problems.append(f"{path}: cannot read: {error.strerror or error}; no entries from it")
            continue
        # surrogateescape keeps a line with stray bytes to be reported, not the whole file lost.
        parsed = accesslist.parse(data.decode("utf-8", "surrogateescape"), path)
        entries.extend(parsed.entries)
        problems.extend(parsed.problems)
    table, duplicates = accesslist.build(entries)
    return table, (*problems, *duplicates)


def prepare(settings: AccessSettings) -> PreparedAccess:
    """Load the access files of ``settings``; problems are logged as warnings, never raised."""
    table, problems = read_files(settings.files)
    for problem in problems:
        log.warning("access: %s", problem)
    if settings.files:
        log.info("access: %d entries from %s", len(table), ", ".join(settings.files))
    return PreparedAccess(settings, table)


def check_mail(
    facts: Facts, prepared: PreparedAccess, services: Services
) -> Verdict | Result | None:
    """Allow or deny the client and sender of this transaction by the access files."""
    connection = facts.connection
    sender = facts.envelope.sender if facts.envelope is not None else None
    local, domain = "", ""
    if isinstance(sender, Mailbox) and sender.literal is None:
        local, domain = sender.local_part, sender.domain
    match = accesslist.lookup(
        prepared.table, connection.client_ip, connection.client_name, local, domain
    )
    if match is None:
        return None
    entry = match.entry
    if entry.allow:
        # No file path here: the reason also goes into the X-MXGuard header of the message.
        note = f": {entry.text}" if entry.text else ""
        reason = f"{match.subject} matches {entry.written}{note}"
        return Result(allow(NAME, "allow", reason), (Allowed(reason),))
    if connection.authenticated:
        return None
    verdict = reject(NAME, "deny", entry.text or DEFAULT_TEXT)
    # The client sees the file's text; the log also names the entry, so the admin can find it.
    return dataclasses.replace(
        verdict, reason=f"{verdict.reason} ({match.subject} matches {entry.written}, {entry.where})"
    )


CHECK = Check(
    name=NAME,
    summary="allow or deny clients and senders listed in access files",
    settings=AccessSettings,
    stages={Stage.MAIL: check_mail},
    prepare=prepare,
    # Our own clients are looked up too: an allow entry for them is harmless, and a deny
    # entry still refuses a trusted network's host (SMTP AUTH excuses a deny, see above).
    exempt=frozenset({Exempt.ALLOWED}),
    provides=frozenset({Allowed}),
    # Without files there is nothing to decide, and the MTA need not wait for a reply.
    decides_at=lambda settings: {Stage.MAIL} if settings.files else (),
)
