"""arc - verify the ARC chain (RFC 8617) and let trusted forwarders vouch for what they saw.

Stage: end of message, after dkim and before dmarc. The chain is verified with dkimpy through
the project's resolver and recorded in Authentication-Results as ``arc=pass|fail|none``.

A mailing list or forwarder changes the message (a subject tag, a footer) or the envelope, so
the author's DKIM signature and SPF no longer pass and DMARC fails through no fault of the
author. When the chain passes and its most recent sealer is one of ``trusted_sealers``, and the
ARC-Authentication-Results that sealer signed say the message passed when it arrived there
(``dmarc=pass``; or, where it recorded no DMARC result, ``dkim=pass`` or ``spf=pass``), the
check provides the TrustedSealer finding and the dmarc check does not refuse or
quarantine the message. Only the most recent sealer counts: its message signature covers the
message as it reaches us; an older trusted seal under a newer untrusted one could sit on top of
a replayed and altered message.

Nothing is refused for ARC itself. Trusted and authenticated clients are not verified.

Outcomes: arc.pass, arc.fail, arc.none, arc.trusted-sealer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import authres
import dkim

from mxguard.core.check import Check, Result, Services
from mxguard.core.dns import dkim_txt_function
from mxguard.core.facts import Facts, Message, Stage
from mxguard.core.findings import TrustedSealer
from mxguard.core.options import DOMAINS, INT, CheckSettings, option
from mxguard.core.verdict import AuthResult, Verdict, passed
from mxguard.mail.dkimverify import quiet_logger

NAME = "arc"

_INSTANCE = re.compile(r"^\s*i\s*=\s*\d+\s*;", re.ASCII)


@dataclass(frozen=True, slots=True)
class ArcSettings(CheckSettings):
    """Options of [arc]."""

    trusted_sealers: tuple[str, ...] = option(
        "",
        "sealer domains (mailing lists, forwarders) whose passing ARC chain excuses a DMARC "
        "failure caused by forwarding",
        DOMAINS,
    )
    max_instances: int = option(
        "20", "a chain longer than this is not verified (RFC 8617 allows 50); arc=fail", INT
    )


def sealed_results(value: bytes | str) -> dict[str, str]:
    """method -> result of an ARC-Authentication-Results value ("i=1; id; dkim=pass ...")."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    body = _INSTANCE.sub("", text, count=1).replace("\r", " ").replace("\n", " ")
    try:
        header = authres.AuthenticationResultsHeader.parse_value(body)
    except Exception:  # authres raises several types on malformed input; none is ours to pass on
        return {}
    found: dict[str, str] = {}
    for result in header.results:
        method, outcome = str(result.method).lower(), str(result.result).lower()
        if found.get(method) != "pass":  # several entries of one method: any pass counts
            found[method] = outcome
    return found


def original_passed(results: dict[str, str]) -> bool:
    """True when a sealer's results show the message passed on arrival there."""
    if "dmarc" in results:
        return results["dmarc"] == "pass"
    return results.get("dkim") == "pass" or results.get("spf") == "pass"


_ARC_FIELDS = frozenset({"arc-seal", "arc-message-signature", "arc-authentication-results"})


def _arc_fields(message: Message) -> int:
    # Any ARC field counts: a set without its seal is a broken chain (fail), not no chain.
    return sum(1 for name, _ in message.headers if name.lower() in _ARC_FIELDS)


def check_eom(facts: Facts, settings: ArcSettings, services: Services) -> Verdict | Result | None:
    """Verify the chain; record arc=; note a trusted sealer that vouches for the original."""
    message = facts.message
    if message is None:
        return None
    count = _arc_fields(message)
    if count == 0:
        return passed(NAME, "none", auth=(AuthResult("arc", "none"),))
    if count > 3 * settings.max_instances:
        reason = f"{count} ARC fields, more than {settings.max_instances} sets"
        return passed(NAME, "fail", reason, (AuthResult("arc", "fail", reason),))
    verifier = dkim.ARC(message.as_bytes(), logger=quiet_logger())
    try:
        cv, instances, reason = verifier.verify(dnsfunc=dkim_txt_function(services.dns))
    except Exception as error:
        # dkimpy raises more than DKIMException on a garbage key or seal (binascii.Error,
        # AssertionError from its DER parser): a chain we cannot verify is a failed one.
        cv, instances, reason = dkim.CV_Fail, [], str(error) or type(error).__name__
    result = "pass" if cv == dkim.CV_Pass else "fail"
    verdict = passed(NAME, result, str(reason)[:200], (AuthResult("arc", result),))
    if result != "pass" or not instances:
        return verdict
    newest = instances[0]
    sealer = newest.get("as-domain", b"").decode("ascii", "replace").lower().rstrip(".")
    if sealer in settings.trusted_sealers and original_passed(
        sealed_results(newest.get("aar-value", b""))
    ):
        note = f"trusted sealer {sealer} saw the original pass"
        verdict = passed(NAME, "trusted-sealer", note, (AuthResult("arc", "pass", note),))
        return Result(verdict, (TrustedSealer(sealer),))
    return verdict


CHECK = Check(
    name=NAME,
    summary="verify ARC chains; a trusted sealer's pass excuses a forwarding DMARC failure",
    settings=ArcSettings,
    stages={Stage.EOM: check_eom},
    reads_body=True,
    provides=frozenset({TrustedSealer}),
)
