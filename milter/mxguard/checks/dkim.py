"""dkim - verify every DKIM signature of the message (RFC 6376, RFC 8463 ed25519).

Stage: end of message. Each signature, up to ``max_signatures``, is verified with dkimpy
through the project's resolver (see ``dkimverify``) and recorded in Authentication-Results as
``dkim=pass|fail|neutral|temperror|permerror`` with ``header.d``, ``header.s`` and ``header.b``
(the first eight characters of the signature, which tell several signatures of one domain
apart, RFC 6008). A message without signatures gets ``dkim=none``.

A signature fails when it does not verify, when it uses rsa-sha1 (RFC 8301), when its RSA key is
shorter than ``min_key_bits``, and when its ``i=`` is outside its ``d=`` domain. A key that cannot
be fetched now is ``temperror``; a missing or malformed key or signature is ``permerror``.

Policy: none by default. DKIM alone says who signed, not whether the mail is wanted, and many
lists break signatures; the dmarc and spoof checks read these results and are where policy
lives. ``fail_action = tag|reject`` acts when the message carries signatures and none passes.

Trusted and authenticated clients are not verified: their mail is ours, and is signed, not
checked (issue of the submission side).

Outcomes: dkim.pass, dkim.none, dkim.fail (and the action of ``fail_action``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mxguard.core.check import Check, Result, Services
from mxguard.core.dns import Query
from mxguard.core.facts import Facts, Stage
from mxguard.core.findings import DkimSignature, DkimSignatures
from mxguard.core.options import INT, SEVERITY, CheckSettings, option
from mxguard.core.verdict import AuthResult, by_severity, passed
from mxguard.mail.dkimverify import SignatureResult, signature_tags, verify_message

NAME = "dkim"


@dataclass(frozen=True, slots=True)
class DkimSettings(CheckSettings):
    """Options of [dkim]."""

    min_key_bits: int = option(
        "1024", "RSA keys shorter than this many bits fail (RFC 8301 asks for 1024)", INT
    )
    max_signatures: int = option(
        "10", "verify at most this many signatures per message; the rest are not recorded", INT
    )
    fail_action: str = option(
        "off",
        "what to do when signatures are present and none passes: off, tag or reject "
        "(policy belongs to [dmarc]; this is for sites that want more)",
        SEVERITY,
    )


def auth_result(signature: SignatureResult) -> AuthResult:
    """The Authentication-Results entry of one signature."""
    properties = []
    if signature.domain:
        properties.append(("header", "d", signature.domain))
    if signature.selector:
        properties.append(("header", "s", signature.selector))
    if signature.signature:
        properties.append(("header", "b", signature.signature[:8]))
    return AuthResult("dkim", signature.result, signature.reason, tuple(properties))


def _key_queries(facts: Facts, settings: DkimSettings, services: Services) -> Iterable[Query]:
    """The key records the signatures name, so they are fetched in parallel with the rest."""
    message = facts.message
    if message is None:
        return []
    queries = []
    for name, value in message.crlf_fields():  # the form the verification memoises by
        if name.lower() != b"dkim-signature" or len(queries) >= settings.max_signatures:
            continue
        fields = signature_tags(value)
        selector, domain = fields.get(b"s", b""), fields.get(b"d", b"")
        if selector and domain:
            text = f"{selector.decode('ascii', 'replace')}._domainkey."
            queries.append(Query(text + domain.decode("ascii", "replace"), "TXT"))
    return queries


def finding(results: Iterable[SignatureResult]) -> DkimSignatures:
    """The DkimSignatures finding: each signature's d= (lower-case, no final dot) and result."""
    return DkimSignatures(
        tuple(DkimSignature(r.domain.rstrip(".").lower(), r.result) for r in results)
    )


def check_eom(facts: Facts, settings: DkimSettings, services: Services) -> Result | None:
    """Verify each signature and record the results; act only as ``fail_action`` says."""
    message = facts.message
    if message is None:
        return None
    if not any(name.lower() == "dkim-signature" for name, _ in message.headers):
        return Result(passed(NAME, "none", auth=(AuthResult("dkim", "none"),)), (finding(()),))
    results = verify_message(
        message, services.dns.lookup, settings.min_key_bits, settings.max_signatures
    )
    auth = tuple(auth_result(result) for result in results)
    found = (finding(results),)
    if not results:  # max_signatures = 0
        return Result(passed(NAME, "none", auth=(AuthResult("dkim", "none"),)), found)
    if any(result.result == "pass" for result in results):
        return Result(passed(NAME, "pass", auth=auth), found)
    reasons = "; ".join(
        f"{r.domain or '?'}: {r.result}" + (f" ({r.reason})" if r.reason else "") for r in results
    )
    reason = f"no valid signature: {reasons}"
    return Result(by_severity(settings.fail_action, NAME, "fail", reason, auth), found)


CHECK = Check(
    name=NAME,
    summary="verify DKIM signatures (rsa-sha256, ed25519) and record them; policy is DMARC's",
    settings=DkimSettings,
    stages={Stage.EOM: check_eom},
    prefetch={Stage.EOM: _key_queries},
    reads_body=True,
    provides=frozenset({DkimSignatures}),
)
