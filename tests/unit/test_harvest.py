"""The harvest check through the pipeline, with recipients after it, on SQLite and on Redis."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mxguard.checks import harvest, recipients
from mxguard.core import config
from mxguard.core.check import Services
from mxguard.core.errors import ConfigError, StoreError
from mxguard.core.facts import Connection, Envelope, Facts, Recipient, Stage
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline, StageResult
from mxguard.core.store import RedisStore, SqliteStore, Store
from mxguard.core.verdict import Action
from mxguard.mail.address import parse_path
from tests.support.redisserver import RedisServer

from .fakes import FakeClock, FakeDns

SITE = "[milter]\nlocal_domains = example.org\n"
ATTACKER = "203.0.113.9"


@dataclass
class Backend:
    store: Store
    clock: FakeClock
    advance: Callable[[float], None]


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path: Path, redis_server: RedisServer) -> Iterator[Backend]:
    clock = FakeClock()
    if request.param == "sqlite":
        store: Store = SqliteStore(str(tmp_path / "state.db"), clock)

        def advance(seconds: float) -> None:
            clock.now += seconds
    else:
        store = RedisStore(redis_server.url)
        store._redis.flushdb()

        def advance(seconds: float) -> None:
            clock.now += seconds
            time.sleep(seconds)  # Redis expires by its own clock

    yield Backend(store, clock, advance)
    store.close()


@pytest.fixture
def listfile(tmp_path: Path) -> Path:
    path = tmp_path / "recipients"
    path.write_text("alice@example.org\n")
    return path


def pipeline(listfile: Path | None, harvest_ini: str = "") -> Pipeline:
    ini = f"{SITE}[harvest]\nmax_unknown = 3\n{harvest_ini}"
    if listfile is not None:
        ini += f"[recipients]\nfile = {listfile}\n"
    settings = config.load("t.ini", text=ini).checks
    return Pipeline(
        [
            (harvest.CHECK, settings[harvest.NAME]),
            (recipients.CHECK, settings[recipients.NAME]),
        ]
    )


def new_connection(store: Store, clock: FakeClock) -> Services:
    """The services of one SMTP connection: its own DNS and notices, the shared store."""
    site = config.load("t.ini", text=SITE).milter
    return Services(site=site, dns=FakeDns(), clock=clock, notices=Notices(clock), store=store)


def rcpt(
    pipe: Pipeline,
    services: Services,
    raw: str,
    ip: str = ATTACKER,
    mta_rejected: bool = False,
    **client,
) -> StageResult:
    facts = Facts(
        Stage.RCPT,
        Connection(client_ip=ipaddress.ip_address(ip), **client),
        Envelope("<x@sender.example>", parse_path("<x@sender.example>")),
        Recipient(raw, parse_path(raw), mta_rejected=mta_rejected),
    )
    return pipe.run(Stage.RCPT, facts, services)


def reply(result: StageResult) -> tuple[str, str, str] | None:
    decision = result.decision
    if decision is None:
        return None
    assert decision.reply is not None
    return decision.reply.smtp_code, decision.reply.dsn_code, decision.text


def probe(pipe: Pipeline, services: Services, n: int, ip: str = ATTACKER) -> None:
    for i in range(n):
        rcpt(pipe, services, f"<nobody{i}@example.org>", ip)


def test_lockout_gives_valid_and_invalid_recipients_the_same_reply(
    backend: Backend, listfile: Path
) -> None:
    pipe = pipeline(listfile)
    services = new_connection(backend.store, backend.clock)
    assert reply(rcpt(pipe, services, "<alice@example.org>")) is None
    for i in range(3):
        first = reply(rcpt(pipe, services, f"<nobody{i}@example.org>"))
        assert first is not None and first[:2] == ("550", "5.1.1")
    valid = rcpt(pipe, services, "<alice@example.org>")
    invalid = rcpt(pipe, services, "<nobody9@example.org>")
    assert (
        reply(valid)
        == reply(invalid)
        == (
            "450",
            "4.7.1",
            f"harvest: {ATTACKER}: too many unknown recipients, try again later",
        )
    )
    assert valid.decision is not None and valid.decision.action is Action.REJECT
    assert [v.check for v in invalid.verdicts] == ["harvest"], "recipients never ran"


def test_lockout_outlives_the_connection_and_spares_other_clients(
    backend: Backend, listfile: Path
) -> None:
    pipe = pipeline(listfile)
    probe(pipe, new_connection(backend.store, backend.clock), 3)
    later = new_connection(backend.store, backend.clock)
    assert reply(rcpt(pipe, later, "<alice@example.org>"))[:2] == ("450", "4.7.1")
    assert reply(rcpt(pipe, later, "<alice@example.org>", "203.0.113.10")) is None
    assert reply(rcpt(pipe, later, "<nobody@example.org>", "203.0.113.10"))[:2] == (
        "550",
        "5.1.1",
    )


def test_counting_below_the_limit_and_expiry(backend: Backend, listfile: Path) -> None:
    pipe = pipeline(listfile, "window = 0.5s\nlockout = 0.5s\n")
    services = new_connection(backend.store, backend.clock)
    probe(pipe, services, 2)
    backend.advance(0.6)  # the window ends: counting starts again
    probe(pipe, services, 2)
    assert reply(rcpt(pipe, services, "<alice@example.org>")) is None
    probe(pipe, services, 1)
    assert reply(rcpt(pipe, services, "<alice@example.org>"))[0] == "450"
    backend.advance(0.6)  # the lock-out ends
    assert reply(rcpt(pipe, services, "<alice@example.org>")) is None


def test_ipv6_clients_are_counted_by_slash_64(backend: Backend, listfile: Path) -> None:
    pipe = pipeline(listfile)
    services = new_connection(backend.store, backend.clock)
    for i in range(3):
        rcpt(pipe, services, f"<nobody{i}@example.org>", f"2001:db8:1:2::{i + 1}")
    same_64 = rcpt(pipe, services, "<alice@example.org>", "2001:db8:1:2:ffff::1")
    assert reply(same_64) == (
        "450",
        "4.7.1",
        "harvest: 2001:db8:1:2::/64: too many unknown recipients, try again later",
    )
    assert reply(rcpt(pipe, services, "<alice@example.org>", "2001:db8:1:3::1")) is None


def test_recipients_the_mta_refused_count(backend: Backend) -> None:
    pipe = pipeline(None)  # no recipients file: only the MTA knows who is unknown
    services = new_connection(backend.store, backend.clock)
    for i in range(3):
        assert reply(rcpt(pipe, services, f"<n{i}@example.org>", mta_rejected=True)) is None
    assert reply(rcpt(pipe, services, "<alice@example.org>"))[:2] == ("450", "4.7.1")


def test_known_recipients_do_not_count(backend: Backend, listfile: Path) -> None:
    pipe = pipeline(listfile)
    services = new_connection(backend.store, backend.clock)
    for _ in range(10):
        assert reply(rcpt(pipe, services, "<alice@example.org>")) is None


@pytest.mark.parametrize(
    "client",
    [{"trusted": True}, {"auth_user": "carol@example.org"}],
    ids=["trusted", "authenticated"],
)
def test_exempt_clients_are_neither_counted_nor_locked_out(
    backend: Backend, listfile: Path, client: dict
) -> None:
    pipe = pipeline(listfile)
    services = new_connection(backend.store, backend.clock)
    for i in range(5):
        result = rcpt(pipe, services, f"<n{i}@example.org>", **client)
        assert reply(result)[:2] == ("550", "5.1.1"), "recipients still applies"
    assert reply(rcpt(pipe, services, "<alice@example.org>", **client)) is None
    # Once the network is locked out by an outsider, exempt clients on it still pass.
    probe(pipe, services, 3)
    assert reply(rcpt(pipe, services, "<alice@example.org>", **client)) is None


def test_lockout_is_logged_once(
    backend: Backend, listfile: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = pipeline(listfile)
    with caplog.at_level(logging.WARNING, "mxguard.harvest"):
        probe(pipe, new_connection(backend.store, backend.clock), 6)
        probe(pipe, new_connection(backend.store, backend.clock), 2)
        for _ in range(3):
            later = new_connection(backend.store, backend.clock)
            rcpt(pipe, later, "<x@example.org>", mta_rejected=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "mxguard.harvest"]
    assert lines == [f"client={ATTACKER} unknown=3 locked_out=1h"]


class BrokenStore:
    """A store whose every operation fails, as an unreachable Redis does."""

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise StoreError("redis redis://127.0.0.1:9/0: connection refused")

        return fail


def test_a_failing_store_fails_open(listfile: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipe = pipeline(listfile)
    services = new_connection(BrokenStore(), FakeClock())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            result = rcpt(pipe, services, f"<n{i}@example.org>")
            assert reply(result)[:2] == ("550", "5.1.1")
            assert [v.check for v in result.verdicts] == ["recipients"]
        assert reply(rcpt(pipe, services, "<alice@example.org>")) is None
    notices = [r for r in caplog.records if r.name == "mxguard.notice"]
    assert len(notices) == 1 and "connection refused" in notices[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info], "no exception escaped the check"


def test_defaults_and_config_errors() -> None:
    settings = config.load("t.ini", text=SITE).checks[harvest.NAME]
    assert (settings.enabled, settings.max_unknown, settings.window, settings.lockout) == (
        True,
        10,
        600.0,
        3600.0,
    )
    with pytest.raises(ConfigError) as raised:
        config.load("site.ini", text=f"{SITE}[harvest]\nwindow = soon\n")
    message = str(raised.value)
    assert "site.ini" in message and "[harvest]" in message and "window" in message


def test_harvest_runs_before_recipients_by_default() -> None:
    names = [check.name for check, _ in config.load("t.ini", text=SITE).ordered_checks()]
    assert names.index("rhsbl") < names.index("harvest") < names.index("recipients")


def test_a_lock_set_by_another_host_is_seen_within_a_second(
    backend: Backend, listfile: Path
) -> None:
    pipe = pipeline(listfile)
    services = new_connection(backend.store, backend.clock)
    assert reply(rcpt(pipe, services, "<alice@example.org>")) is None  # clear: remembered
    backend.store.put(harvest.LOCK_PREFIX + ATTACKER, "10", 3600)  # another MX host locks
    assert reply(rcpt(pipe, services, "<alice@example.org>")) is None  # not read again yet
    backend.clock.now += harvest.CLEAR_SECONDS + 0.1
    assert reply(rcpt(pipe, services, "<alice@example.org>"))[:2] == ("450", "4.7.1")
