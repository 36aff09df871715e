"""dmarc - apply the author domain's DMARC policy (RFC 7489) at end of message.

Stage: end of message, after the spf, dkim and arc checks, whose verdicts it reads. Trusted and
authenticated clients are exempt: a site's own users are never DMARC-checked.

The author domain is the domain of the one mailbox in the header From. Its policy is the TXT
record at ``_dmarc.<domain>``, else at ``_dmarc.<organizational domain>`` (whose ``sp`` then
applies); both names are asked in parallel. The message passes when SPF passed for a domain
aligned with the author domain (the MAIL FROM identity, or the HELO identity for the null
sender) or a DKIM signature passed whose ``d=`` is aligned (relaxed: the same organizational
domain; strict: the same domain, as the record's ``aspf`` and ``adkim`` ask). A failing message
gets the record's policy, or the next lower one when ``pct`` leaves it out of the sample:

    reject -> 550 5.7.1 dmarc: <domain> policy is reject: no aligned SPF or DKIM pass (...)
              (honour_reject = no: only tagged)
    quarantine -> tagged, or held in the MTA's quarantine (quarantine_action = quarantine)
    none -> accepted, recorded in Authentication-Results only

When the failure came through a forwarder that an ARC sealer we trust vouched for (the arc
check's TrustedSealer finding), the policy is overridden (RFC 7489 section 6.7 local
policy): the message is only tagged. No record, several records or a broken record: no DMARC
(dmarc=none or dmarc=permerror). A DNS failure is dmarc=temperror: accepted, or with
``temperror = tempfail`` 451 4.4.3. When the message would fail but an identifier that would
align could not be checked now (a DKIM key lookup that timed out, SPF temperror, or the spf or
dkim check failing), the result is temperror: 451 4.4.3 where the policy would refuse or hold
the message, else recorded. A From field with no, several or unreadable addresses (the
ambiguity that lets a verifier and a reader see different authors) is dmarc=permerror, tagged.

Outcomes: dmarc.pass, dmarc.reject, dmarc.quarantine, dmarc.fail (p=none), dmarc.arc-override,
dmarc.none, dmarc.temperror, dmarc.permerror, dmarc.bad-from.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace

from mxguard.core.check import Check, Services
from mxguard.core.dns import Found, Query, Unknown
from mxguard.core.facts import Facts, Stage
from mxguard.core.findings import (
    CouldNotTell,
    DkimSignatures,
    SpfIdentity,
    SpfResults,
    TrustedSealer,
)
from mxguard.core.options import BOOL, CheckSettings, choice, option
from mxguard.core.verdict import (
    AuthResult,
    Replies,
    Verdict,
    deferred,
    passed,
    reject,
    tag,
    tempfail,
)
from mxguard.mail import dmarc
from mxguard.mail.address import NullPath
from mxguard.mail.author import Author, author
from mxguard.mail.textutil import printable

NAME = "dmarc"


@dataclass(frozen=True, slots=True)
class DmarcSettings(CheckSettings):
    """Options of [dmarc]."""

    quarantine_action: str = option(
        "tag",
        "p=quarantine failures: tag, or quarantine (held in the MTA)",
        choice("tag", "quarantine"),
    )
    honour_reject: bool = option("yes", "refuse p=reject failures (no: only tag them)", BOOL)
    temperror: str = option(
        "accept",
        "DNS failure on the DMARC record: accept, or tempfail (451 4.4.3)",
        choice("accept", "tempfail"),
    )


# Seeded from the OS once: a sender sees at most one accept-or-quarantine bit per message,
# far from what predicting the generator would take. os.urandom per message would release
# the interpreter lock for a system call, and waiting to get it back costs more than the draw.
_SAMPLER = random.Random(secrets.randbits(64))


def draw_sample() -> int:
    """A number in 0..99 for pct sampling, which a sender cannot aim outside of."""
    return _SAMPLER.randrange(100)


def _spf(facts: Facts) -> SpfIdentity | CouldNotTell | None:
    """The SPF identity DMARC uses: MAIL FROM, or HELO for the null sender (RFC 7489 section
    4.1 by way of RFC 7208 section 2.4); None when SPF was not evaluated."""
    found = facts.findings.get(SpfResults)
    if not isinstance(found, SpfResults):
        return found
    null_sender = facts.envelope is not None and isinstance(facts.envelope.sender, NullPath)
    return found.helo if null_sender else found.mailfrom


def _evidence(
    spf: SpfIdentity | CouldNotTell | None, dkim: DkimSignatures | CouldNotTell | None
) -> str:
    """What SPF and DKIM said, for the reason text: "SPF fail for x, DKIM pass for y"."""
    if isinstance(spf, CouldNotTell):
        spf_text = "SPF could not be told"
    else:
        spf_text = f"SPF {spf.result} for {spf.domain}" if spf else "no SPF"
    if isinstance(dkim, CouldNotTell):
        return f"{spf_text}, DKIM could not be told"
    if not dkim or not dkim.signatures:
        return f"{spf_text}, no DKIM"
    seen = list(dict.fromkeys(f"{s.result} for {s.domain}" for s in dkim.signatures))
    more = ", ..." if len(seen) > 3 else ""
    return f"{spf_text}, DKIM " + ", ".join(seen[:3]) + more


def _untold(
    author_domain: str,
    spf: SpfIdentity | CouldNotTell | None,
    dkim: DkimSignatures | CouldNotTell | None,
) -> list[tuple[str, str]]:
    """The identifiers that could not be checked now; a whole finding that could not be told
    might have held any identifier, the author domain's own included."""
    untold = []
    if isinstance(spf, CouldNotTell):
        untold.append(("spf", author_domain))
    elif spf is not None and spf.result == "temperror":
        untold.append(("spf", spf.domain))
    if isinstance(dkim, CouldNotTell):
        untold.append(("dkim", author_domain))
    elif dkim is not None:
        untold.extend(("dkim", domain) for domain in dkim.untold())
    return untold


def ask_at_eom(facts: Facts, settings: DmarcSettings, services: Services) -> Iterable[Query]:
    """Both policy names (author and organizational domain), asked in parallel."""
    if facts.message is None:
        return []
    found = author(facts.message)
    if not isinstance(found, Author):
        return []
    return [Query(name, "TXT") for name in dmarc.policy_names(found.domain)]


def _texts(services: Services, name: str) -> list[str] | None:
    """The TXT texts at ``name``; None when the DNS could not tell."""
    answer = services.dns.lookup(name, "TXT")
    if isinstance(answer, Unknown):
        return None
    return list(answer.texts()) if isinstance(answer, Found) else []


def _auth(result: dmarc.DmarcResult) -> AuthResult:
    """The Authentication-Results entry: dmarc=<result> header.from=<domain> policy.dmarc=..."""
    properties = [("header", "from", result.header_from)]
    if result.result in ("pass", "fail"):
        properties.append(("policy", "dmarc", result.policy))
    reason = "" if result.result == "pass" else result.reason
    return AuthResult("dmarc", result.result, reason, tuple(properties))


def _refuses(policy: str, settings: DmarcSettings) -> bool:
    """True when a failure with ``policy`` is refused or held, not only recorded."""
    if policy == "reject":
        return settings.honour_reject
    return policy == "quarantine" and settings.quarantine_action == "quarantine"


def _subject(result: dmarc.DmarcResult) -> str:
    subject = f"{result.header_from} policy is {result.requested}"
    if result.policy_tag == "sp":
        subject += f" (sp of {result.record_domain})"
    return subject


def _failure(
    result: dmarc.DmarcResult,
    evidence: str,
    settings: DmarcSettings,
    sealer: TrustedSealer | CouldNotTell | None,
) -> Verdict:
    """The verdict for a DMARC fail: the policy to apply, unless a trusted sealer overrides it."""
    # The evidence holds d= values exactly as signatures gave them.
    reason = printable(f"{_subject(result)}: no aligned SPF or DKIM pass ({evidence})", 300)
    if not result.sampled:
        reason += f"; pct={result.pct} sampled out: {result.policy}"
    if isinstance(sealer, CouldNotTell) and _refuses(result.policy, settings):
        # A trusted sealer would have overridden the policy: refuse nothing that it might.
        verdict = deferred(NAME, "temperror", f"{reason}; ARC could not be told now")
        return replace(verdict, auth=(_auth(replace(result, result="temperror")),))
    if result.policy != "none" and isinstance(sealer, TrustedSealer):
        reason += (
            f"; policy overridden: forwarded via trusted ARC sealer {printable(sealer.domain, 100)}"
        )
        result = replace(result, policy="none", reason=reason)
        return tag(NAME, "arc-override", reason, (_auth(result),))
    auth = (_auth(replace(result, reason=reason)),)
    if result.policy == "reject":
        if not settings.honour_reject:
            return tag(NAME, "reject", reason, auth)
        return replace(reject(NAME, "reject", reason), auth=auth)
    if result.policy == "quarantine":
        verdict = tag(NAME, "quarantine", reason, auth)
        if settings.quarantine_action != "quarantine":
            return verdict
        return replace(verdict, quarantine=f"dmarc: {reason}")  # monitor mode clears it
    return passed(NAME, "fail", reason, auth)


def _untold_alignment(result: dmarc.DmarcResult, evidence: str, settings: DmarcSettings) -> Verdict:
    """A message that would fail, but for an identifier that could not be checked now and
    would align: deferred when the policy would refuse it (RFC 7489 temperror), else recorded."""
    reason = printable(f"{_subject(result)}: {result.reason} ({evidence})", 300)
    auth = (_auth(replace(result, reason=reason)),)
    if _refuses(result.policy, settings):
        return replace(deferred(NAME, "temperror", reason), auth=auth)
    return passed(NAME, "temperror", reason, auth)


def check_eom(facts: Facts, settings: DmarcSettings, services: Services) -> Verdict | None:
    """Apply the author domain's DMARC policy to the message."""
    message = facts.message
    if message is None:
        return None
    found = author(message)
    if not isinstance(found, Author):
        return tag(NAME, "bad-from", found, (AuthResult("dmarc", "permerror", found),))
    discovery = dmarc.discover(found.domain, lambda name: _texts(services, name))
    spf = _spf(facts)
    dkim = facts.findings.get(DkimSignatures)
    result = dmarc.evaluate(
        found.domain,
        discovery,
        [spf.domain] if isinstance(spf, SpfIdentity) and spf.result == "pass" else [],
        dkim.passing() if isinstance(dkim, DkimSignatures) else [],
        draw_sample(),
        _untold(found.domain, spf, dkim),
    )
    if result.result == "pass":
        aligned = result.dkim_aligned or result.spf_aligned
        how = "DKIM" if result.dkim_aligned else "SPF"
        return passed(NAME, "pass", f"{how} pass aligned for {aligned}", (_auth(result),))
    if result.result == "fail":
        sealer = facts.findings.get(TrustedSealer)
        return _failure(result, _evidence(spf, dkim), settings, sealer)
    if result.result == "temperror" and result.requested:
        return _untold_alignment(result, _evidence(spf, dkim), settings)
    auth = (_auth(result),)
    if result.result == "temperror" and settings.temperror == "tempfail":
        verdict = tempfail(NAME, "temperror", result.reason, Replies.TEMPORARY_DNS)
        return replace(verdict, auth=auth)
    return passed(NAME, result.result, result.reason, auth)


CHECK = Check(
    name=NAME,
    summary="apply the From domain's DMARC policy (aligned SPF or DKIM pass), ARC-aware",
    settings=DmarcSettings,
    stages={Stage.EOM: check_eom},
    prefetch={Stage.EOM: ask_at_eom},
    needs=frozenset({SpfResults, DkimSignatures, TrustedSealer}),
)
