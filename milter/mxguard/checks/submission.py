"""submission - the site's own users: authentication, senders bound to logins, rate limits.

Stages: MAIL, RCPT and end of message.

* On a submission listener (``{daemon_name}`` in ``[milter] submission_daemons``) a client
  that did not log in is refused at MAIL FROM: ``530 5.7.0 Authentication required``. Postfix
  should refuse it first (``smtpd_sender_restrictions``); mxguard holds the line when its
  configuration is wrong.
* A logged-in client may send as its own addresses only, in the envelope (refused at MAIL)
  and in the header From (refused at end of message): ``550 5.7.1 submission: <login> may not
  send as <address>``. A login that contains @ (Cyrus SASL's user@realm) is an address and
  may use exactly that; one without @ is a local part and may use ``login@`` each of
  ``[milter] local_domains``. ``sender_map`` adds lines ``login: address, @domain, ...``
  (``@domain``: any address there); ``login: *`` may send as anyone (an admin, a ticket
  system). The null sender is allowed (vacation replies, delivery notices). A From that holds
  several addresses or does not parse is refused: it cannot be checked. A message without a
  From has nothing to forge and passes (the headers check tags it).
* Per login, counted in the state store (so shared by MX hosts on Redis): more than
  ``max_messages_per_hour`` messages or ``max_recipients_per_hour`` recipients in an hour
  gets ``451 4.7.1 submission: <login> ...``, at MAIL or RCPT. At 80% of either limit a
  warning is logged, once an hour per login: a stolen password shows here before it shows on
  a blocklist. A failing store limits nothing (a warning at most once a minute).

The inbound checks (DNSBL, reverse DNS, SPF, DMARC, greylisting...) skip authenticated
clients on their own; this check is what applies to them instead.

Outcomes: submission.auth-required, submission.sender, submission.header-from,
submission.rate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mxguard.core.check import Check, Services
from mxguard.core.errors import StoreError
from mxguard.core.facts import Connection, Facts, Stage
from mxguard.core.options import INT, PATH, CheckSettings, option
from mxguard.core.verdict import Action, Replies, Verdict, reject, tempfail
from mxguard.mail.address import Mailbox, NullPath
from mxguard.mail.author import NO_FIELD, Author, author
from mxguard.mail.textutil import printable

NAME = "submission"
WARN_SHARE = 0.8
HOUR = 3600.0

log = logging.getLogger("mxguard.submission")


@dataclass(frozen=True, slots=True)
class SubmissionSettings(CheckSettings):
    """Options of [submission]."""

    sender_map: str = option(
        "",
        "file of 'login: address, @domain, ...' lines (login: * may send as anyone); empty: "
        "each login sends as itself only",
        PATH,
    )
    max_messages_per_hour: int = option(
        "200", "messages one login may send in an hour (0: no limit)", INT
    )
    max_recipients_per_hour: int = option(
        "1000", "recipients one login may send to in an hour (0: no limit)", INT
    )


@dataclass(frozen=True, slots=True)
class SenderMap:
    """What each login may send as, beyond itself: addresses, domains, or anything."""

    addresses: dict[str, frozenset[str]]
    domains: dict[str, frozenset[str]]
    anyone: frozenset[str]


@dataclass(frozen=True, slots=True)
class Prepared:
    """The settings with the sender map loaded."""

    settings: SubmissionSettings
    senders: SenderMap


def load_sender_map(path: str) -> SenderMap:
    """Read a sender map; unreadable files and bad lines are logged and skipped."""
    addresses: dict[str, set[str]] = {}
    domains: dict[str, set[str]] = {}
    anyone: set[str] = set()
    if not path:
        return SenderMap({}, {}, frozenset())
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        log.error("[submission] sender_map %s: %s; logins send as themselves only", path, error)
        return SenderMap({}, {}, frozenset())
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        login, colon, rest = line.partition(":")
        login = login.strip().lower()
        if not colon or not login:
            log.error("%s:%d: expected 'login: address, @domain, ...'", path, number)
            continue
        for entry in (part.strip().lower() for part in rest.split(",")):
            if entry == "*":
                anyone.add(login)
            elif entry.startswith("@") and len(entry) > 1:
                domains.setdefault(login, set()).add(entry[1:].rstrip("."))
            elif "@" in entry.strip("@"):
                addresses.setdefault(login, set()).add(entry)
            elif entry:
                log.error("%s:%d: %r is not an address, @domain or *", path, number, entry)
    return SenderMap(
        {k: frozenset(v) for k, v in addresses.items()},
        {k: frozenset(v) for k, v in domains.items()},
        frozenset(anyone),
    )


def prepare(settings: SubmissionSettings) -> Prepared:
    """Load the sender map of ``settings``."""
    return Prepared(settings, load_sender_map(settings.sender_map))


def may_send_as(login: str, address: str, senders: SenderMap, local_domains: tuple) -> bool:
    """True when ``login`` may use ``address`` as its sender (envelope or header From)."""
    login, address = login.strip().lower(), address.strip().lower()
    if login in senders.anyone or address in senders.addresses.get(login, ()):
        return True
    local, _, domain = address.rpartition("@")
    domain = domain.rstrip(".")
    if domain in senders.domains.get(login, ()):
        return True
    if "@" in login:  # user@realm: the login is the address
        return address == login
    return local == login and domain in local_domains


def _refused(login: str, address: str, outcome: str) -> Verdict:
    return reject(
        NAME, outcome, f"{printable(login, 100)} may not send as {printable(address, 200)}"
    )


def _auth_required() -> Verdict:
    reply = Replies.AUTH_REQUIRED
    return Verdict(
        Action.REJECT,
        NAME,
        f"{NAME}.auth-required",
        "no SMTP AUTH on the submission listener",
        reply,
        "Authentication required",
    )


def _over_limit(
    connection: Connection, kind: str, limit: int, services: Services
) -> Verdict | None:
    """Count one more ``kind`` for the login; a tempfail when it is over ``limit``."""
    if limit <= 0 or services.store is None:
        return None
    login = connection.auth_user.lower()
    try:
        used = services.store.incr(f"submission:{kind}:{login}", HOUR)
        if used >= limit * WARN_SHARE and services.store.put_new(
            f"submission:warned:{kind}:{login}", str(used), HOUR
        ):
            log.warning(
                "login=%s %s=%d limit=%d per hour: 80%% reached (a stolen password?)",
                printable(login, 100),
                kind,
                used,
                limit,
            )
    except StoreError as error:
        services.notices.warn("store", "submission: state store failed, no limits: %s", error)
        return None
    if used <= limit:
        return None
    return tempfail(
        NAME,
        "rate",
        f"{printable(login, 100)}: more than {limit} {kind} an hour, try again later",
        Replies.TEMPORARY,
    )


def check_mail(facts: Facts, prepared: Prepared, services: Services) -> Verdict | None:
    """Require AUTH on the submission listener; bind the envelope sender; count the message."""
    connection, envelope = facts.connection, facts.envelope
    if not connection.authenticated:
        return _auth_required() if connection.submission else None
    if envelope is None:
        return None
    sender = envelope.sender
    if isinstance(sender, Mailbox):
        if not may_send_as(
            connection.auth_user, sender.address, prepared.senders, services.site.local_domains
        ):
            return _refused(connection.auth_user, sender.address, "sender")
    elif not isinstance(sender, NullPath):
        return None  # a MAIL FROM that does not parse is the sender check's
    settings = prepared.settings
    return _over_limit(connection, "messages", settings.max_messages_per_hour, services)


def check_rcpt(facts: Facts, prepared: Prepared, services: Services) -> Verdict | None:
    """Count the recipient against the login's hourly limit."""
    connection = facts.connection
    if not connection.authenticated or facts.recipient is None:
        return None
    settings = prepared.settings
    return _over_limit(connection, "recipients", settings.max_recipients_per_hour, services)


def check_eom(facts: Facts, prepared: Prepared, services: Services) -> Verdict | None:
    """Bind the header From to the login."""
    connection, message = facts.connection, facts.message
    if not connection.authenticated or message is None:
        return None
    found = author(message)
    if found == NO_FIELD:
        return None  # nothing to forge; the headers check tags it
    if not isinstance(found, Author):
        return _refused(connection.auth_user, ", ".join(message.values("From")), "header-from")
    if may_send_as(
        connection.auth_user, found.address, prepared.senders, services.site.local_domains
    ):
        return None
    return _refused(connection.auth_user, found.address, "header-from")


CHECK = Check(
    name=NAME,
    summary="require AUTH on submission, bind senders to logins, limit each login's rate",
    settings=SubmissionSettings,
    stages={Stage.MAIL: check_mail, Stage.RCPT: check_rcpt, Stage.EOM: check_eom},
    prepare=prepare,
    exempt=frozenset(),  # our own users: an access-list allow must not unbind their senders
)
