"""backscatter - refuse bounces for mail we never sent (BATV, draft-levine-smtp-batv-01 prvs).

Stages: MAIL (outbound tagging) and RCPT (inbound bounces).

* Outbound: with ``batv_secret`` set, mail from trusted or authenticated clients whose envelope
  sender is in one of our domains leaves with the sender rewritten (at end of message) to
  ``prvs=KDDDSSSSSS=local@domain``, tagged with the first secret.
* Inbound, for every client: a recipient in our domains that carries a valid, unexpired tag is
  accepted and delivered to the untagged address (delrcpt + addrcpt at end of message).
* Inbound, for clients that are neither trusted nor authenticated (nor access-list allowed):
  refused with ``550 5.7.1 backscatter: ...`` are a recipient with a forged or expired tag
  (always: no one but us makes tags), a bounce (``MAIL FROM:<>``) to an untagged address when
  ``batv_required = yes`` (except the local parts in ``batv_exempt``, by default postmaster
  and abuse, which must take reports), the second and later recipients of a bounce (a real DSN
  has one), and any mail to ``MAILER-DAEMON@`` one of our domains (it sends, never receives).

Outcomes: backscatter.tagged, backscatter.valid-tag, backscatter.untagged-bounce,
backscatter.bad-tag, backscatter.expired-tag, backscatter.multi-recipient-bounce,
backscatter.mailer-daemon.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mxguard.core.check import Check, Services
from mxguard.core.facts import Facts, Stage
from mxguard.core.findings import Allowed
from mxguard.core.options import BOOL, DURATION, SECRETS, WORDS, CheckSettings, option
from mxguard.core.verdict import ChangeSender, ReplaceRecipient, Verdict, passed, reject
from mxguard.mail import batv
from mxguard.mail.address import Mailbox, NullPath, parse_path
from mxguard.mail.textutil import printable

NAME = "backscatter"
MAX_LOCAL_PART_OCTETS = 64


@dataclass(frozen=True, slots=True)
class BackscatterSettings(CheckSettings):
    """Options of [backscatter]."""

    batv_secret: tuple[str, ...] = option(
        "",
        "BATV secrets, comma-separated: tags are made with the first and accepted with any "
        "(list a new secret first and keep the old one for a lifetime); empty: BATV off",
        SECRETS,
    )
    batv_required: bool = option(
        "no",
        "refuse a bounce to one of our addresses that carries no BATV tag (turn on once every "
        "outgoing message is tagged, one lifetime after setting batv_secret)",
        BOOL,
    )
    batv_lifetime: float = option(
        "7d", "how long a tag stays valid (whole days, at most 999d)", DURATION
    )
    batv_exempt: tuple[str, ...] = option(
        "postmaster, abuse",
        "local parts that take untagged bounces even with batv_required = yes",
        WORDS,
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    """The settings as the stage functions use them."""

    secrets: tuple[str, ...]
    required: bool
    lifetime: int  # days
    exempt: frozenset[str]


def prepare(settings: BackscatterSettings) -> Prepared:
    """Secrets as given, the lifetime in whole days, exempt local parts lower-cased."""
    return Prepared(
        secrets=settings.batv_secret,
        required=settings.batv_required,
        lifetime=batv.lifetime_days(settings.batv_lifetime),
        exempt=frozenset(word.lower() for word in settings.batv_exempt),
    )


def _today(services: Services) -> int:
    return batv.day_number(services.clock())


def check_mail(facts: Facts, prepared: Prepared, services: Services) -> Verdict | None:
    """Tag the envelope sender of our own users' mail."""
    envelope = facts.envelope
    if not prepared.secrets or envelope is None or not facts.connection.ours:
        return None
    sender = envelope.sender
    if not isinstance(sender, Mailbox) or not sender.domain or sender.literal is not None:
        return None
    if not services.site.receives_for(sender.domain) or batv.parse_tag(sender.address):
        return None
    if sender.quoted or sender.source_route:
        return None  # a tag would need a quoted local part; leave such senders alone
    tagged = batv.make_tag(sender.address, prepared.secrets, _today(services), prepared.lifetime)
    local = tagged.rpartition("@")[0]
    if len(local.encode("utf-8", "surrogatepass")) > MAX_LOCAL_PART_OCTETS:
        return None
    verdict = passed(NAME, "tagged", f"sender tagged as {tagged}")
    return dataclasses.replace(verdict, envelope=(ChangeSender(tagged),))


def check_rcpt(facts: Facts, prepared: Prepared, services: Services) -> Verdict | None:
    """Untag valid BATV recipients; refuse bounces that cannot be replies to our mail."""
    envelope, recipient = facts.envelope, facts.recipient
    if envelope is None or recipient is None or recipient.mta_rejected:
        return None
    path = recipient.path
    if not isinstance(path, Mailbox) or not path.domain or path.literal is not None:
        return None  # <postmaster>, literals, junk: not ours to judge (relay refuses junk)
    if not services.site.receives_for(path.domain):
        return None
    enforce = not (facts.connection.ours or facts.findings.known(Allowed) is not None)
    bounce = isinstance(envelope.sender, NullPath)
    shown = printable(recipient.raw.strip().strip("<>"), 200)
    local = path.local_part.lower()

    if enforce and local == "mailer-daemon":
        return reject(NAME, "mailer-daemon", f"{shown} does not receive mail")
    if enforce and bounce and envelope.recipients:
        return reject(NAME, "multi-recipient-bounce", "a bounce has only one recipient")
    if not prepared.secrets:
        return None

    tag = batv.parse_tag(path.address)
    if tag is not None:
        status = batv.valid(tag, prepared.secrets, _today(services), prepared.lifetime)
        if status is batv.Status.VALID:
            original = parse_path(tag.original)
            if isinstance(original, Mailbox) and original.domain == path.domain:
                verdict = passed(NAME, "valid-tag", f"BATV tag valid for {tag.original}")
                edit = ReplaceRecipient(old=recipient.raw, new=original.address)
                return dataclasses.replace(verdict, envelope=(edit,))
            status = batv.Status.BAD_SIGNATURE  # our tags never cross domains
        if not enforce:
            return None
        if status is batv.Status.EXPIRED:
            return reject(NAME, "expired-tag", f"BATV tag expired: {shown}")
        return reject(NAME, "bad-tag", f"bad BATV signature: {shown}")

    if enforce and bounce and prepared.required and local not in prepared.exempt:
        return reject(
            NAME, "untagged-bounce", f"bounce to {shown}, which is not BATV tagged: not our mail"
        )
    return None


CHECK = Check(
    name=NAME,
    summary="BATV tags on our senders; refuse bounces to untagged, forged or expired addresses",
    settings=BackscatterSettings,
    stages={Stage.MAIL: check_mail, Stage.RCPT: check_rcpt},
    # Run for every client: untagging valid recipients is delivery, not filtering, and our
    # own clients' senders are the ones tagged. The refusals spare them (see check_rcpt).
    exempt=frozenset(),
    needs=frozenset({Allowed}),
    prepare=prepare,
)
