"""Fixtures for the end-to-end tests: a test DNS server, mxguard, and a private Postfix using it.

Postfix listens on 127.0.0.1:<free port> and hands every SMTP connection to mxguard over TCP;
mxguard resolves through the test DNS server only. The test client connects from 127.0.0.1, which
is neither in Postfix's mynetworks nor in mxguard's trusted_networks: an ordinary outside client.

Two Postfix defences are switched off on purpose, so that what the client sees is mxguard's
verdict and not Postfix's: ``allow_untrusted_routing = yes`` (stock Postfix answers
``454 4.7.1 Relay access denied`` itself to user%host@ and host!user@ recipients, before any
milter sees them) and a catch-all mailbox (stock Postfix answers ``550 5.1.1 User unknown in
virtual mailbox table`` to unknown local parts).

Set MXGUARD_E2E_MILTER=noop to run the harness against bench/noop_milter.py instead of mxguard
(tests that need mxguard's behaviour are then skipped), and MXGUARD_E2E_KEEP=1 to keep the
working directory (/tmp/mxguard-e2e-*) for inspection.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.dnsserver import TestDnsServer
from tests.support.mxguard_proc import NOOP_COMMAND, MxguardProcess, free_port
from tests.support.postfix import DEFAULT_USERS, PostfixInstance, postfix_available

# What the Internet looks like to this test: the client 127.0.0.1 has forward-confirmed reverse
# DNS (client.sender.example), sender.example publishes SPF for it, and example.test is ours.
ZONES = """
$TTL 300
example.test.            IN SOA  ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
example.test.            IN NS   ns.example.test.
example.test.            IN MX   10 mx.example.test.
mx.example.test.         IN A    127.0.0.1
ns.example.test.         IN A    127.0.0.1

sender.example.          IN SOA  ns.sender.example. hostmaster.sender.example. 1 3600 600 86400 60
sender.example.          IN NS   ns.sender.example.
sender.example.          IN MX   10 client.sender.example.
sender.example.          IN TXT  "v=spf1 ip4:127.0.0.1 ip4:127.0.0.2 ip4:127.0.0.3 -all"
_dmarc.sender.example.   IN TXT  "v=DMARC1; p=none"
client.sender.example.   IN A    127.0.0.1
ns.sender.example.       IN A    127.0.0.1

127.in-addr.arpa.        IN SOA  ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
1.0.0.127.in-addr.arpa.  IN PTR  client.sender.example.

; SPF results for the sender domains of tests/e2e/test_mail_from_e2e.py.
fail.example.            IN SOA  ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
fail.example.            IN MX   10 client.sender.example.
fail.example.            IN TXT  "v=spf1 ip4:192.0.2.99 -all"
softfail.example.        IN SOA  ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
softfail.example.        IN MX   10 client.sender.example.
softfail.example.        IN TXT  "v=spf1 ip4:192.0.2.99 ~all"

; End of message (tests/e2e/test_message_e2e.py): signed.example signs with DKIM and publishes
; p=reject; strict.example publishes p=reject and does not send from here. The DKIM key records
; (selector e2e) are added below ZONES, from tests/data/dkim/test.txt.
signed.example.          IN SOA  ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
signed.example.          IN MX   10 client.sender.example.
signed.example.          IN TXT  "v=spf1 -all"
_dmarc.signed.example.   IN TXT  "v=DMARC1; p=reject"
strict.example.          IN SOA  ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
strict.example.          IN MX   10 client.sender.example.
_dmarc.strict.example.   IN TXT  "v=DMARC1; p=reject"

; A blocklist that lists 127.0.0.2: a test client connecting from that loopback address is a
; listed spam source (Linux routes all of 127.0.0.0/8 to the loopback interface).
dnsbl.test.              IN SOA  ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
2.0.0.127.dnsbl.test.    IN A    127.0.0.2
2.0.0.127.dnsbl.test.    IN TXT  "spam source, see https://dnsbl.test/127.0.0.2"
"""

# Users of the submission listener (Cyrus sasldb; Postfix hands mxguard user@realm).
SASL_USERS = {"carol@example.test": "carol-secret", "erin@example.test": "erin-secret"}
RATE_LIMITED = "erin@example.test"  # [submission] limits are tested with this login alone
SIGNING_KEY = Path(__file__).resolve().parent.parent / "data" / "dkim" / "test.private"

# One DKIM key (tests/data/dkim/test.txt, private half test.private) for every signer here:
# signed.example (inbound DKIM), example.test (our outbound signing), lists.example (ARC).
DKIM_SIGNERS = ("signed.example", "example.test", "lists.example")
DKIM_RECORD = (Path(__file__).resolve().parent.parent / "data" / "dkim" / "test.txt").read_text()
ZONES += "".join(
    f"e2e._domainkey.{signer}. IN TXT ("
    + " ".join(
        f'"{DKIM_RECORD.strip()[i : i + 200]}"' for i in range(0, len(DKIM_RECORD.strip()), 200)
    )
    + ")\n"
    for signer in DKIM_SIGNERS
)

LISTED_CLIENT = "127.0.0.2"
HARVESTER = "127.0.0.3"  # a client address of its own, so its lock-out touches no other test
OUR_RELAY = "127.0.0.4"  # in trusted_networks: our own users' mail, tagged with BATV

USE_NOOP = os.environ.get("MXGUARD_E2E_MILTER", "mxguard").strip().lower() == "noop"
KEEP = os.environ.get("MXGUARD_E2E_KEEP", "") not in ("", "0", "no")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e with the e2e marker."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


# -- logs of failed tests -----------------------------------------------------------------------

# name -> (log_text(since), log_size()) of every running component, for failure reports.
LogSource = tuple[Callable[[int], str], Callable[[], int]]
_LOG_SOURCES: dict[str, LogSource] = {}
_LOG_START = pytest.StashKey[dict[str, int]]()
_MAX_LOG_CHARS = 20_000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the Postfix and mxguard logs written during a failed test to its report."""
    report: pytest.TestReport = yield
    if report.failed and _LOG_SOURCES:
        start = item.stash.get(_LOG_START, {})
        for name, (text, _size) in _LOG_SOURCES.items():
            log = text(start.get(name, 0))
            if len(log) > _MAX_LOG_CHARS:
                log = "[…]" + log[-_MAX_LOG_CHARS:]
            report.sections.append((f"{name} log ({report.when})", log or "(empty)"))
    return report


@pytest.fixture(autouse=True)
def _log_offsets(request: pytest.FixtureRequest) -> None:
    """Remember where each log stood when the test started."""
    request.node.stash[_LOG_START] = {name: size() for name, (_t, size) in _LOG_SOURCES.items()}


# -- components ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def e2e_dir() -> Iterator[Path]:
    """Return a working directory the postfix user can traverse (pytest's tmp dirs are 0700)."""
    reason = postfix_available()
    if reason:
        message = f"end-to-end tests need a private Postfix: {reason}"
        # In CI (`make test` installs Postfix) a missing Postfix is a failure, never a skip.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    path = Path(tempfile.mkdtemp(prefix="mxguard-e2e-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    if KEEP:
        print(f"\nkept e2e working directory {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def dns_server() -> Iterator[TestDnsServer]:
    """Serve ZONES on 127.0.0.1 (UDP and TCP) for the whole session."""
    with TestDnsServer(ZONES) as server:
        yield server


def mxguard_config(socket: str, dns: TestDnsServer, base: Path) -> dict[str, dict[str, str]]:
    """Return mxguard's INI for these tests as {section: {option: value}}."""
    return {
        "milter": {
            "socket": socket,
            "hostnames": "mx.example.test",
            "local_domains": "example.test",
            # NOT 127.0.0.0/8: the test client is outside; 127.0.0.4 plays our own relay.
            "trusted_networks": f"192.0.2.0/24, {OUR_RELAY}/32",
            "authserv_id": "mx.example.test",
        },
        "dns": {"nameservers": dns.address, "timeout": "2s"},
        "dnsbl": {"zones": "dnsbl.test=1"},
        "recipients": {"file": str(_recipients_file(base))},
        "harvest": {"max_unknown": "3", "window": "10m", "lockout": "1h"},
        "backscatter": {"batv_secret": "e2e-secret"},
        "arc": {"trusted_sealers": "lists.example"},
        "submission": {"max_recipients_per_hour": "6"},
        "dkim_sign": {
            "domain": "example.test",
            "selector": "e2e",
            "key": str(_signing_key(base)),
        },
        "state": {"url": f"sqlite:///{base / 'state.db'}"},
    }


def _signing_key(base: Path) -> Path:
    """Our outbound DKIM key, readable by its owner only (mxguard refuses any other)."""
    base.mkdir(parents=True, exist_ok=True)
    key = base / "dkim.key"
    shutil.copy(SIGNING_KEY, key)
    key.chmod(0o600)
    return key


def _recipients_file(base: Path) -> Path:
    """The mailboxes mxguard knows: the test users (Postfix's catch-all takes the rest)."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / "recipients"
    path.write_text(
        "alice@example.test\nbob@example.test\npostmaster@example.test\n"
        "carol@example.test\nerin@example.test\n"
    )
    return path


@contextlib.contextmanager
def running_mxguard(
    name: str, config: dict[str, dict[str, str]], work: Path, command: Sequence[str] | None = None
) -> Iterator[MxguardProcess]:
    """An mxguard process whose log goes into failure reports as ``name``."""
    work.mkdir(exist_ok=True)
    process = MxguardProcess(config, work_dir=work, command=command)
    _LOG_SOURCES[name] = (process.log_text, process.log_size)
    try:
        process.start()
        yield process
    finally:
        process.stop()
        _LOG_SOURCES.pop(name, None)


@contextlib.contextmanager
def running_postfix(name: str, base_dir: Path, milter: str) -> Iterator[PostfixInstance]:
    """A private Postfix for mxguard at ``milter``, its log in failure reports as ``name``."""
    instance = PostfixInstance(
        base_dir=base_dir,
        milter=milter,
        catchall="catchall",
        main_cf={"allow_untrusted_routing": "yes"},
        users=(*DEFAULT_USERS, "carol", "erin"),
        sasl_users=SASL_USERS,
    )
    _LOG_SOURCES[name] = (instance.log_text, instance.log_size)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        _LOG_SOURCES.pop(name, None)


@pytest.fixture(scope="module")
def mxguard_process(e2e_dir: Path, dns_server: TestDnsServer) -> Iterator[MxguardProcess]:
    """Run mxguard (or the noop milter) on a loopback TCP port for one test module."""
    work = e2e_dir / "mxguard"
    config = mxguard_config(f"inet:{free_port()}@127.0.0.1", dns_server, work)
    command = NOOP_COMMAND if USE_NOOP else None
    with running_mxguard("mxguard", config, work, command) as process:
        yield process


@pytest.fixture(scope="module")
def postfix(e2e_dir: Path, mxguard_process: MxguardProcess) -> Iterator[PostfixInstance]:
    """Run a private Postfix whose smtpd_milters is mxguard, for one test module."""
    with running_postfix("postfix", e2e_dir / "postfix", mxguard_process.postfix_socket) as mta:
        yield mta


@pytest.fixture
def mxguard(mxguard_process: MxguardProcess) -> MxguardProcess:
    """Return the module's mxguard process, restarted first if an earlier test left it dead."""
    if not mxguard_process.alive():
        mxguard_process.start()
    return mxguard_process


@pytest.fixture
def requires_mxguard() -> None:
    """Skip a test that checks mxguard's own behaviour when the noop milter stands in."""
    if USE_NOOP:
        pytest.skip("MXGUARD_E2E_MILTER=noop: this test needs mxguard itself")


@pytest.fixture
def mta(postfix: PostfixInstance, mxguard: MxguardProcess) -> Iterator[PostfixInstance]:
    """Return Postfix with mxguard running, an empty queue and empty mailboxes."""
    with contextlib.suppress(AssertionError):
        postfix.wait_for_empty_queue(timeout=10)
    for mbox in postfix.mail_dir.iterdir():
        if mbox.is_file():
            mbox.unlink()
    yield postfix
