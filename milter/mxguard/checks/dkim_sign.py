"""dkim_sign - sign our own outgoing mail with DKIM (RFC 6376; ed25519 per RFC 8463).

Stage: end of message, last: a message another check refuses is not signed. Mail from trusted
or authenticated clients whose header From domain has a key is signed with dkimpy, relaxed/
relaxed, over From (signed twice, so no second From can be added), To, Cc, Subject, Date,
Message-ID, Reply-To, In-Reply-To, References, MIME-Version and the Content-* fields that the
message has. A From in a subdomain uses the key of the nearest parent domain that has one.

Keys: one with ``domain``, ``selector`` and ``key``, or a ``key_table`` file of ``domain
selector keyfile`` lines for several domains (both may be used; the table wins for its
domains). A key file is a PEM RSA private key (rsa-sha256) or dkimpy's base64 ed25519 seed
(ed25519-sha256). A key file that others can read, that cannot be read, or that does not parse
stops startup (and a reload keeps the old settings), naming the file and what is wrong:
publish the public key with ``openssl pkey -pubout``, and keep the file mode 0640 or tighter.

Nothing is refused here. Outcome: dkim_sign.signed (the DKIM-Signature is added at the top).
"""

from __future__ import annotations

import base64
import binascii
import logging
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import dkim

from mxguard.core.check import Check, Services
from mxguard.core.facts import Facts, Stage
from mxguard.core.options import PATH, STRING, CheckSettings, option
from mxguard.core.verdict import Verdict, passed
from mxguard.mail.author import Author, author

NAME = "dkim_sign"
SIGNED_FIELDS = (
    "from",
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)

log = logging.getLogger("mxguard.dkim_sign")


@dataclass(frozen=True, slots=True)
class DkimSignSettings(CheckSettings):
    """Options of [dkim_sign]."""

    domain: str = option("", "the domain of the single key (d=); empty: only key_table", STRING)
    selector: str = option("", "the selector of the single key (s=)", STRING)
    key: str = option(
        "", "file of the single key: PEM RSA, or base64 ed25519 seed; mode 0640 or tighter", PATH
    )
    key_table: str = option(
        "", "file of 'domain selector keyfile' lines, one key per signing domain", PATH
    )


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One signing key: where it signs, and how."""

    domain: str
    selector: str
    private: bytes
    algorithm: bytes  # rsa-sha256 or ed25519-sha256


def read_key(path: str) -> tuple[bytes, bytes]:
    """(key bytes, algorithm) from a key file; ValueError says what is wrong with it."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        data = file.read_bytes().strip()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ValueError(f"{path} can be read by others: chmod o-rwx (0640 or tighter)")
    if b"PRIVATE KEY-----" in data:
        try:
            dkim.crypto.parse_pem_private_key(data)
        except Exception:  # dkimpy raises several types for a bad PEM
            raise ValueError(f"{path} is not a PEM RSA private key dkimpy can read") from None
        return data, b"rsa-sha256"
    try:
        seed = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise ValueError(f"{path} is neither a PEM RSA private key nor a base64 ed25519 seed")
    return data, b"ed25519-sha256"


def _table_entries(path: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(domain, selector, key file) lines of a key table, and its problems."""
    entries, problems = [], []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        return [], [f"cannot read {path}: {error.strerror}"]
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 3:
            problems.append(f"{path}:{number}: expected 'domain selector keyfile'")
            continue
        entries.append((words[0].lower().rstrip("."), words[1], words[2]))
    return entries, problems


def _configured(settings: DkimSignSettings) -> tuple[list[tuple[str, str, str]], list[str]]:
    entries, problems = [], []
    if settings.domain or settings.key or settings.selector:
        if not (settings.domain and settings.key and settings.selector):
            problems.append("domain, selector and key go together")
        else:
            entries.append((settings.domain.lower().rstrip("."), settings.selector, settings.key))
    if settings.key_table:
        table, table_problems = _table_entries(settings.key_table)
        entries += table
        problems += table_problems
    return entries, problems


def validate(settings: DkimSignSettings) -> Iterable[tuple[str, str]]:
    """Every key must be readable by us only, and parse; checked at start and on reload."""
    entries, problems = _configured(settings)
    option_name = "key_table" if settings.key_table else "key"
    found = [(option_name, f"expected {problem}") for problem in problems]
    for _domain, _selector, path in entries:
        try:
            read_key(path)
        except ValueError as error:
            found.append((option_name, f"expected a private key file: {error}"))
    return found


@dataclass(frozen=True, slots=True)
class Prepared:
    """The keys by signing domain."""

    keys: dict[str, SigningKey]


def prepare(settings: DkimSignSettings) -> Prepared:
    """Load the keys (validate has vouched for them; a key that broke since is logged)."""
    keys: dict[str, SigningKey] = {}
    entries, _problems = _configured(settings)
    for domain, selector, path in entries:
        try:
            private, algorithm = read_key(path)
        except ValueError as error:
            log.error("[dkim_sign] %s: not signing for %s", error, domain)
            continue
        keys[domain] = SigningKey(domain, selector, private, algorithm)
    return Prepared(keys)


def key_for(domain: str, keys: dict[str, SigningKey]) -> SigningKey | None:
    """The key of ``domain`` or of its nearest parent domain that has one."""
    labels = domain.lower().rstrip(".").split(".")
    for start in range(len(labels) - 1):
        key = keys.get(".".join(labels[start:]))
        if key is not None:
            return key
    return None


def check_eom(facts: Facts, prepared: Prepared, services: Services) -> Verdict | None:
    """Sign the message of a trusted or authenticated client when its From domain has a key."""
    message = facts.message
    if message is None or not facts.connection.ours or not prepared.keys:
        return None
    found = author(message)
    if not isinstance(found, Author):
        return None
    key = key_for(found.domain, prepared.keys)
    if key is None:
        return None
    present = {name.lower() for name, _ in message.headers}
    names = [name.encode() for name in SIGNED_FIELDS if name in present or name == "from"]
    field = dkim.sign(
        message.as_bytes(),
        key.selector.encode(),
        key.domain.encode(),
        key.private,
        signature_algorithm=key.algorithm,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=names,
        logger=None,
    )
    name, _, value = field.decode("ascii").partition(":")
    # dkimpy folds with CRLF; the MTA wants LF-folded values (it writes CRLF itself).
    value = value.strip().replace("\r\n", "\n")
    signed = passed(NAME, "signed", f"d={key.domain} s={key.selector}")
    return replace(signed, headers=((name, value),))


CHECK = Check(
    name=NAME,
    summary="DKIM-sign mail from our own clients (rsa-sha256 or ed25519-sha256)",
    settings=DkimSignSettings,
    stages={Stage.EOM: check_eom},
    prepare=prepare,
    exempt=frozenset(),  # it signs our own clients' mail, which the others leave alone
    validate=validate,
    decides_at=lambda settings: {Stage.EOM} if (settings.key or settings.key_table) else (),
)
