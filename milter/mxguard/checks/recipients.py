"""recipients - refuse recipients at our local domains that are not in the recipients file.

Stage: RCPT, for every client (trusted and authenticated ones too: a mailbox that does not
exist does not exist for them either). Only when ``[recipients] file`` is set; without it the
check decides nothing.

The file has one address per line: ``user@example.org`` (that mailbox) or ``@example.org``
(every local part at that domain, a catch-all). A line whose first non-blank character is
``#`` is a comment; blank lines are ignored. A line that cannot be used is logged as a warning
(``file:line: what is wrong``) and the rest still applies. Domains and local parts are both
compared without regard to case (as Postfix's local_recipient_maps and most mailbox stores
do); address extensions (``user+tag``) are not stripped, so list them or use a catch-all.

Refused with ``550 5.1.1 recipients: <addr>: no such user here``: a recipient whose domain is
in ``[milter] local_domains`` and that neither the file lists nor a catch-all covers. The reply
says nothing more. Passed: recipients at other domains (the relay check handles those),
address literals, ``<postmaster>`` and ``postmaster@`` any domain (RFC 5321 section 4.5.1), and
recipients the MTA already refused.

The file is read at start (and on SIGUSR1, with the rest of the configuration) and again when
it changes on disk: the stage function looks at its modification time at most once every
``CHECK_EVERY`` seconds of the services clock. If the file cannot be read at start, or holds no
entry, the check decides nothing (refusing every local recipient would lose all mail); if it
cannot be read later, the table last read stays in use. Both are warned about.

Outcomes: recipients.unknown.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mxguard.core.check import Check, Result, Services
from mxguard.core.errors import ValueParseError
from mxguard.core.facts import Facts, Stage
from mxguard.core.findings import UnknownRecipient
from mxguard.core.options import PATH, CheckSettings, option, parse_domain_name
from mxguard.core.verdict import Replies, Verdict, reject
from mxguard.mail import batv
from mxguard.mail.address import Mailbox, parse_path
from mxguard.mail.textutil import printable

NAME = "recipients"
CHECK_EVERY = 5.0  # seconds between looks at the file's modification time

log = logging.getLogger("mxguard.recipients")


@dataclass(frozen=True, slots=True)
class RecipientsSettings(CheckSettings):
    """Options of [recipients]."""

    file: str = option(
        "",
        "file of valid recipients, one user@domain or @domain (catch-all) per line; empty: "
        "recipients are not checked",
        PATH,
    )


@dataclass(frozen=True, slots=True)
class Table:
    """The valid recipients: (local part, domain) pairs and catch-all domains, lower case."""

    mailboxes: frozenset[tuple[str, str]]
    catch_all: frozenset[str]

    def __len__(self) -> int:
        return len(self.mailboxes) + len(self.catch_all)

    def knows(self, local_part: str, domain: str) -> bool:
        """True when ``local_part@domain`` is a valid recipient."""
        domain = domain.lower()
        return domain in self.catch_all or (local_part.lower(), domain) in self.mailboxes


def parse(text: str, path: str) -> tuple[Table, list[str]]:
    """The table of a recipients file's ``text``, and a ``path:line: problem`` for each bad line."""
    mailboxes: set[tuple[str, str]] = set()
    catch_all: set[str] = set()
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        where = f"{path}:{number}"
        if len(entry.split()) != 1:
            problems.append(f"{where}: expected one address, got {printable(entry, 100)!r}")
            continue
        if entry.startswith("@"):
            try:
                catch_all.add(parse_domain_name(entry[1:]))
            except ValueParseError:
                problems.append(f"{where}: bad catch-all domain {printable(entry, 100)!r}")
            continue
        parsed = parse_path(f"<{entry}>")
        if not isinstance(parsed, Mailbox) or not parsed.domain or parsed.literal is not None:
            problems.append(
                f"{where}: expected user@domain or @domain, got {printable(entry, 100)!r}"
            )
            continue
        mailboxes.add((parsed.local_part.lower(), parsed.domain.lower()))
    return Table(frozenset(mailboxes), frozenset(catch_all)), problems


def _signature(path: str) -> tuple[int, int, int]:
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size, status.st_ino


class RecipientsFile:
    """The loaded table and where it came from; reloaded when the file changes.

    This is the check's only mutable state, one per configuration generation, shared by the
    libmilter threads: ``current`` swaps in a new table under a lock, and one thread at a time
    reads the file while the others go on with the table they have.
    """

    def __init__(self, path: str, now: float = 0.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._table: Table | None = None
        self._signature: tuple[int, int, int] | None = None
        self._next_look = now + CHECK_EVERY
        self.load()

    @property
    def table(self) -> Table | None:
        """The table in use; None when no usable file was ever read (the check then passes)."""
        return self._table

    def load(self, warn: Callable[..., object] | None = None) -> bool:
        """Read the file; True when a new table is in use. Problems go to ``warn`` (log)."""
        report = warn or log.warning
        try:
            signature = _signature(self.path)
            with open(self.path, "rb") as handle:
                data = handle.read()
        except OSError as error:
            kept = "keeping the entries read before" if self._table else "recipients not checked"
            report("recipients: %s: cannot read: %s; %s", self.path, error.strerror, kept)
            return False
        # surrogateescape keeps a line with stray bytes to be reported, not the whole file lost.
        table, problems = parse(data.decode("utf-8", "surrogateescape"), self.path)
        for problem in problems:
            log.warning("recipients: %s", problem)
        self._signature = signature
        if not table:
            log.warning("recipients: %s: no entries; recipients are not checked", self.path)
            self._table = None
            return True
        self._table = table
        log.info("recipients: %d entries from %s", len(table), self.path)
        return True

    def current(self, now: float, services: Services | None = None) -> Table | None:
        """The table to use at ``now``, after reading the file again if it changed."""
        if now < self._next_look or not self._lock.acquire(blocking=False):
            return self._table
        try:
            if now >= self._next_look:
                self._next_look = now + CHECK_EVERY
                self._reload_if_changed(services)
        finally:
            self._lock.release()
        return self._table

    def _reload_if_changed(self, services: Services | None) -> None:
        warn = None
        if services is not None:
            notices = services.notices

            def warn(message: str, *args: object) -> None:
                notices.warn(f"recipients-file:{self.path}", message, *args)

        try:
            signature = _signature(self.path)
        except OSError as error:
            (warn or log.warning)(
                "recipients: %s: cannot read: %s; keeping the entries read before",
                self.path,
                error.strerror,
            )
            return
        if signature != self._signature:
            self.load(warn)


@dataclass(frozen=True, slots=True)
class PreparedRecipients:
    """The settings with their recipients file, as the stage function gets them."""

    settings: RecipientsSettings
    source: RecipientsFile | None


def prepare(settings: RecipientsSettings) -> PreparedRecipients:
    """Load the recipients file of ``settings``; problems are logged, never raised."""
    return PreparedRecipients(settings, RecipientsFile(settings.file) if settings.file else None)


def check_rcpt(
    facts: Facts, prepared: PreparedRecipients, services: Services
) -> Verdict | Result | None:
    """Refuse a recipient at a local domain that the recipients file does not list."""
    recipient, source = facts.recipient, prepared.source
    if recipient is None or source is None or recipient.mta_rejected:
        return None
    path = recipient.path
    if not isinstance(path, Mailbox) or path.literal is not None or not path.domain:
        return None  # <postmaster>, address literals; bad syntax is the relay check's
    if path.domain.lower() not in services.site.local_domains:
        return None
    if path.local_part.lower() == "postmaster":
        return None
    table = source.current(services.clock(), services)
    # A BATV-tagged address (prvs=...=local@domain) is judged by the mailbox it stands for;
    # the backscatter check validates the tag and delivers to that mailbox.
    tag = batv.parse_tag(path.address)
    local_part = tag.original.rpartition("@")[0] if tag else path.local_part
    if table is None or table.knows(local_part, path.domain):
        return None
    shown = printable(path.address, 200)
    verdict = reject(NAME, "unknown", f"<{shown}>: no such user here", Replies.UNKNOWN_USER)
    if prepared.settings.monitor:
        return verdict  # accepted after all: nothing for the harvest check to count
    return Result(verdict, (UnknownRecipient(path.address),))


CHECK = Check(
    name=NAME,
    summary="refuse unknown recipients at our local domains, from a recipients file",
    settings=RecipientsSettings,
    stages={Stage.RCPT: check_rcpt},
    prepare=prepare,
    exempt=frozenset(),  # an unknown mailbox is unknown for every client, allowed or trusted
    provides=frozenset({UnknownRecipient}),
    decides_at=lambda settings: {Stage.RCPT} if settings.file else (),
)
