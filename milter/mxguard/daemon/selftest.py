"""Before READY, and before a reload takes over: can mxguard do its work as the milter user?

Run after the privilege drop, so that what fails here would otherwise fail in the middle of
real transactions, each with a ``451 4.3.0``:

* the data files the checks read again on reload (``[access] files``, ``[recipients] file``,
  ``[rdns] patterns_file`` …) must be readable by the milter user (:mod:`readability`);
* the state store must take a write;
* one synthetic inbound transaction and one authenticated submission run through every
  enabled check without an internal error, with their DNS questions answered from canned
  records in memory (:mod:`canned_dns`; nothing goes out) and a scratch store. The message is
  RFC 8463's example (Appendix A.3), signed with ed25519-sha256 and rsa-sha256 by keys whose
  records (Appendix A.2) are among the canned ones, so the DKIM verification path of this
  dkimpy is proven to pass.

A problem is one line: what failed, the path the user could not read where one is to blame,
and the fix. :mod:`preload` is what makes the synthetic transaction pass from an install the
user cannot read; this module proves it did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import logging
import os
import pwd
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

from mxguard.core.check import Services
from mxguard.core.config import Settings
from mxguard.core.dns import ConnectionLookups, Resolver
from mxguard.core.errors import StoreError
from mxguard.core.facts import Connection, Envelope, IPAddress, Message, Recipient, Stage
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline
from mxguard.core.session import Session
from mxguard.core.store import SqliteStore, Store
from mxguard.core.verdict import Verdict
from mxguard.daemon.canned_dns import CannedServer, Record
from mxguard.daemon.readability import group_name, unreadable_files, unreadable_install
from mxguard.daemon.trace_fields import authentication_results
from mxguard.mail.address import parse_path

log = logging.getLogger("mxguard")

SENDER_DOMAIN = "football.example.com"  # the signing domain of RFC 8463's example message
MESSAGE = "rfc8463-example.eml"
CLIENT_CANDIDATES = ("203.0.113.25", "198.51.100.25", "192.0.2.25", "2001:db8::25")
DKIM_KEYS = (
    ("brisbane", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="),
    (
        "test",
        "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6"
        "Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6"
        "lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
    ),
)


@dataclass(frozen=True, slots=True)
class Report:
    """What the self-test found: problems stop startup (or refuse a reload), warnings do not."""

    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


class _Captured(logging.Handler):
    """Collects what the synthetic transactions log, from this thread only: at a reload,
    libmilter's threads go on logging real decisions meanwhile."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.records: list[logging.LogRecord] = []
        self.addFilter(self.ours)

    def ours(self, record: logging.LogRecord) -> bool:
        """True for a record of the synthetic transactions."""
        return record.thread == self.thread

    def others(self, record: logging.LogRecord) -> bool:
        """True for a record that the real handlers should still write."""
        return record.thread != self.thread

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record."""
        self.records.append(record)


def check(settings: Settings, pipeline: Pipeline, store: Store | None = None) -> Report:
    """Everything this module checks, as the current user; ``store``: the real one to probe."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    problems = [*unreadable_files(settings, user)]
    if store is not None:
        problems += _store_problems(settings, store)
    failure = run_transactions(settings, pipeline)
    warnings = []
    blocked = unreadable_install(failure.path if failure else "")
    if failure:
        where = f"; user {user} cannot read {blocked}" if blocked else ""
        problems.append(
            f"self-test as user {user} failed: {failure}{where}; fix: install mxguard where "
            f"{user} can read it (not under a mode 0700 directory such as /root), or set "
            "[milter] user = (empty) to keep running as root"
        )
    elif blocked:
        warnings.append(
            f"user {user} cannot read {blocked}: everything mxguard uses was loaded before the "
            "privilege drop, so mail flows, but an upgrade in place needs a restart"
        )
    if not os.access(settings.path, os.R_OK):
        warnings.append(
            f"user {user} cannot read {settings.path}: a reload (SIGUSR1) will be refused; "
            f"put the configuration where {user} can read it (e.g. /etc/mxguard, mode 0640, "
            f"group {group_name()})"
        )
    return Report(tuple(problems), tuple(warnings))


def _store_problems(settings: Settings, store: Store) -> list[str]:
    """A store that takes no write stops startup for SQLite (a file we should own) and is a
    warning-free pass for Redis, which may come up after us (the checks fail open)."""
    try:
        store.put(f"selftest:{os.getpid()}", "1", 1.0)
    except StoreError as error:
        if isinstance(store, SqliteStore):
            return [
                f"{settings.path}: [state] url: {error}; fix: give the directory to the milter "
                "user, or point [state] url at a directory it can write"
            ]
        log.warning("state store not usable now (the checks fail open): %s", error)
    return []


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong in a synthetic transaction, and the file it names, if any."""

    text: str
    path: str = ""

    def __str__(self) -> str:
        return self.text


def run_transactions(settings: Settings, pipeline: Pipeline) -> Failure | None:
    """Run the synthetic transactions; None when they went through, else what went wrong."""
    ip = _client_ip(settings)
    resolver = Resolver(servers=[CannedServer(_records(ip))], cache_size=0, metered=False)
    scratch = SqliteStore(":memory:")
    captured = _Captured()
    try:
        with _capturing(captured):
            verdicts = _transaction(settings, pipeline, resolver, scratch, _inbound(ip))
            verdicts += _transaction(
                settings, pipeline, resolver, scratch, _submission(ip, settings)
            )
            results = authentication_results(settings.milter.authserv_id, verdicts)
    except Exception as error:  # the adapter would have turned this into a 451 4.3.0
        return _failure("", error)
    finally:
        resolver.close(wait=True)
        scratch.close()
    for record in captured.records:
        if record.exc_info and record.exc_info[1] is not None:
            return _failure(record.getMessage() + ": ", record.exc_info[1])
    failed = [v.check for v in verdicts if v.outcome.endswith(".internal-error")]
    if failed:
        return Failure(f"internal error in {', '.join(failed)}")
    dkim = settings.checks.get("dkim")
    if dkim is not None and dkim.enabled and "dkim=pass" not in results:
        return Failure(
            "the DKIM signatures of RFC 8463's example did not verify (is this dkimpy "
            f"version supported?): {results}"
        )
    return None


def _failure(context: str, error: BaseException) -> Failure:
    path = getattr(error, "filename", None) or getattr(error, "path", None) or ""
    return Failure(f"{context}{type(error).__name__}: {error}", str(path))


@contextlib.contextmanager
def _capturing(captured: _Captured) -> Iterator[None]:
    """Within the block, what this thread logs goes to ``captured`` and not to the log."""
    root = logging.getLogger("mxguard")
    handlers = root.handlers[:]
    for handler in handlers:
        handler.addFilter(captured.others)
    root.addHandler(captured)
    try:
        yield
    finally:
        root.removeHandler(captured)
        for handler in handlers:
            handler.removeFilter(captured.others)


def _client_ip(settings: Settings) -> IPAddress:
    """A documentation address outside trusted_networks, so the inbound checks run."""
    for text in CLIENT_CANDIDATES:
        ip = ipaddress.ip_address(text)
        if not settings.milter.trusts(ip):
            return ip
    return ipaddress.ip_address(CLIENT_CANDIDATES[0])


def _records(ip: IPAddress) -> list[Record]:
    """The canned Internet: forward-confirmed reverse DNS, SPF through an include, MX, DMARC
    p=reject and the DKIM keys of RFC 8463 (a CNAME on the way, and every type asked for)."""
    domain = SENDER_DOMAIN
    family = "A" if ip.version == 4 else "AAAA"
    return [
        (ip.reverse_pointer + ".", "PTR", f"mail.{domain}."),
        (f"mail.{domain}.", "CNAME", f"mx1.{domain}."),
        (f"mx1.{domain}.", family, str(ip)),
        (
            f"mx1.{domain}.",
            "AAAA" if family == "A" else "A",
            "2001:db8::1" if family == "A" else "192.0.2.1",
        ),
        (f"{domain}.", "MX", f"10 mail.{domain}."),
        (f"{domain}.", "NS", f"ns.{domain}."),
        (f"{domain}.", "TXT", f'"v=spf1 a include:_spf.{domain} -all"'),
        (f"_spf.{domain}.", "TXT", f'"v=spf1 ip{ip.version}:{ip} -all"'),
        (f"_dmarc.{domain}.", "TXT", '"v=DMARC1; p=reject"'),
        *((f"{selector}._domainkey.{domain}.", "TXT", f'"{key}"') for selector, key in DKIM_KEYS),
    ]


@dataclass(frozen=True, slots=True)
class _Synthetic:
    """One transaction to run: the client, the envelope and the message."""

    connection: Connection
    sender: str
    recipient: str
    message: Message


@functools.cache
def _example() -> bytes:
    """RFC 8463's signed example, read once (before the privilege drop)."""
    return resources.files("mxguard").joinpath("data", MESSAGE).read_bytes()


def _inbound(ip: IPAddress) -> _Synthetic:
    message = _message(_example())
    connection = Connection(
        client_ip=ip, client_name=f"mail.{SENDER_DOMAIN}", helo=f"mail.{SENDER_DOMAIN}"
    )
    return _Synthetic(connection, f"<joe@{SENDER_DOMAIN}>", "<postmaster@{local}>", message)


def _submission(ip: IPAddress, settings: Settings) -> _Synthetic:
    """A logged-in user of ours sending out: the submission and signing checks act on it."""
    daemons = settings.milter.submission_daemons
    local = _local_domain(settings)
    connection = Connection(
        client_ip=ip,
        client_name="unknown",
        helo="laptop.invalid",
        daemon_name=daemons[0] if daemons else "submission",
        auth_user=f"selftest@{local}",
        auth_type="PLAIN",
        submission=True,
    )
    text = (
        f"From: Self Test <selftest@{local}>\nTo: <joe@{SENDER_DOMAIN}>\nSubject: self-test\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\nMessage-ID: <selftest@{local}>\n\nHello.\n"
    )
    return _Synthetic(
        connection, f"<selftest@{local}>", f"<joe@{SENDER_DOMAIN}>", _message(text.encode())
    )


def _message(raw: bytes) -> Message:
    """A message as the MTA hands it over: fields with their leading space and LF folds, the
    body with CRLF line ends."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\n" + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return Message.from_raw(fields, body.replace(b"\n", b"\r\n"))


def _local_domain(settings: Settings) -> str:
    milter = settings.milter
    return (milter.local_domains or milter.hostnames or ("example.org",))[0]


def _transaction(
    settings: Settings, pipeline: Pipeline, resolver: Resolver, store: Store, txn: _Synthetic
) -> list[Verdict]:
    """Every stage in turn, as the adapter runs them; every stage runs even after a refusal,
    so that every check is exercised."""
    services = Services(
        site=settings.milter,
        dns=ConnectionLookups(resolver),
        clock=time.time,
        notices=Notices(time.time),
        store=store,
    )
    connection = dataclasses.replace(
        txn.connection,
        trusted=settings.milter.trusts(txn.connection.client_ip),
        interface_ip=ipaddress.ip_address("192.0.2.1"),
        mta_name=(settings.milter.hostnames or ("mx.example.org",))[0],
    )
    local = _local_domain(settings)
    recipient_text = txn.recipient.format(local=local)
    envelope = Envelope(txn.sender, parse_path(txn.sender, allow_null=True), queue_id="SELFTEST")
    recipient = Recipient(recipient_text, parse_path(recipient_text))
    verdicts: list[Verdict] = []
    steps = (
        (Stage.CONNECT, None, None, None),
        (Stage.HELO, None, None, None),
        (Stage.MAIL, envelope, None, None),
        (Stage.RCPT, envelope, recipient, None),
        (
            Stage.EOM,
            Envelope(txn.sender, envelope.sender, recipients=(recipient,)),
            None,
            txn.message,
        ),
    )
    session = Session()
    for stage, env, rcpt, message in steps:
        facts = session.facts(stage, connection, env, rcpt, message)
        result = pipeline.run(stage, facts, services)
        verdicts.extend(result.verdicts)
        session.record(stage, result)
    return verdicts
