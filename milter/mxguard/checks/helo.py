"""helo - refuse or tag clients whose HELO/EHLO name claims to be us or is not a host name.

Stage: MAIL. SMTP AUTH comes after HELO, so the verdict waits for MAIL FROM, when
``{auth_authen}`` is known; nothing is decided at HELO itself. Trusted and authenticated
clients are exempt. The name checked is the last HELO/EHLO of the session.

Options (each ``off``, ``tag`` or ``reject``; ``syntax`` cannot be off):

* ``forged`` (reject): the client greets with one of our ``[milter] hostnames``, the MTA's
  own name (macro ``j``), a ``[milter] local_domains`` name, an address literal of ours (the
  address it connected to), or an address literal that is not its own address.
* ``non_fqdn`` (tag): a single-label name (``localhost``, ``WIN-7Q2``).
* ``syntax`` (reject): neither a valid host name nor a valid address literal, including an
  empty HELO, a bare IP address without brackets and an all-numeric name (``1.2.3``). The
  reply is the policy one, not Postfix's 501: it answers MAIL FROM, whose syntax was fine.

The syntax is lenient where real mail servers are sloppy, as Postfix's valid_hostname is:
any case, one trailing dot (``mx.example.org.``) and underscores in labels are accepted.
``domain_name.parse_domain`` follows RFC 5321 (letters, digits and hyphens, no trailing dot) and
is used unchanged; this check drops the trailing dot first, and tolerates an underscore only
in an ASCII name that would be valid with a letter in its place.
The problems are looked for in the order syntax, forged, non_fqdn; the first one found
whose option is not ``off`` gives the verdict.

Replies: ``550 5.7.1 helo: <helo> is ...`` naming what is wrong.

Outcomes: helo.forged, helo.non-fqdn, helo.syntax.
"""

from __future__ import annotations

from dataclasses import dataclass

from mxguard.core.check import Check, Services
from mxguard.core.facts import Connection, Facts, Stage, normalise_ip
from mxguard.core.options import SEVERITY, CheckSettings, Severity, choice, option
from mxguard.core.verdict import Verdict, by_severity
from mxguard.mail.domain_name import Domain
from mxguard.mail.heloname import parse_helo
from mxguard.mail.textutil import printable

NAME = "helo"

OFF, TAG, REJECT = Severity.OFF, Severity.TAG, Severity.REJECT


@dataclass(frozen=True, slots=True)
class HeloSettings(CheckSettings):
    """Options of [helo]."""

    forged: str = option(
        REJECT,
        "a HELO that claims to be us (our host name, a local domain, our address literal) "
        "or an address literal not the client's own: off, tag or reject",
        SEVERITY,
    )
    non_fqdn: str = option(TAG, "a single-label HELO name (no dot): off, tag or reject", SEVERITY)
    syntax: str = option(
        REJECT,
        "a HELO that is neither a host name nor an address literal (empty, bare IP): tag or reject",
        choice(TAG, REJECT),
    )


def forgery(helo: Domain, connection: Connection, services: Services) -> str:
    """What the HELO falsely claims ("" when nothing): to be us, or an address not the client's."""
    if helo.name.startswith("["):
        literal = normalise_ip(helo.literal) if helo.literal else None
        if literal is not None and literal == connection.interface_ip:
            return "our own address"
        if connection.client_ip is None:
            return ""  # nothing to compare with (a non-IP client)
        if literal != connection.client_ip:
            return f"not your address ({connection.client_text})"
        return ""
    site = services.site
    if helo.name in site.hostnames or helo.name == connection.mta_name.lower().rstrip("."):
        return "our own host name"
    if helo.name in site.local_domains:
        return "our own domain"
    return ""


def check_mail(facts: Facts, settings: HeloSettings, services: Services) -> Verdict | None:
    """Judge the HELO name of an outside client, now that SMTP AUTH is known."""
    connection = facts.connection
    shown = printable(connection.helo, 100) or "(empty)"
    helo = parse_helo(connection.helo)
    if isinstance(helo, str):
        return by_severity(
            settings.syntax, NAME, "syntax", f"{shown} is not a valid host name ({helo})"
        )
    claim = forgery(helo, connection, services)
    if claim and settings.forged != OFF:
        return by_severity(settings.forged, NAME, "forged", f"{shown} is {claim}")
    if not helo.name.startswith("[") and "." not in helo.name and settings.non_fqdn != OFF:
        return by_severity(
            settings.non_fqdn, NAME, "non-fqdn", f"{shown} is not a fully qualified name"
        )
    return None


CHECK = Check(
    name=NAME,
    summary="refuse a HELO that claims to be us, tag one that is not fully qualified",
    settings=HeloSettings,
    stages={Stage.MAIL: check_mail},
)
