"""The greylist check, against SQLite (fake clock) and a real redis-server (fake clock too: the
decisions use the clock's times stored in the values, and the TTLs are long)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mxguard.checks import greylist
from mxguard.core import config
from mxguard.core.check import Services
from mxguard.core.errors import ConfigError, StoreError
from mxguard.core.facts import Connection, Envelope, Facts, Recipient, Stage
from mxguard.core.findings import Allowed, CouldNotTell, Findings, SpfIdentity, SpfResults
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline
from mxguard.core.store import RedisStore, SqliteStore, Store
from mxguard.core.verdict import Action, Verdict
from mxguard.mail.address import parse_path
from tests.support.redisserver import RedisServer

from .fakes import FakeClock, FakeDns

SITE = "[milter]\nlocal_domains = example.org\n"
ENABLED = SITE + "[greylist]\nenabled = yes\n"
START = 1_000_000.0
DELAY, EXPIRE, RETAIN = 300.0, 4 * 3600.0, 35 * 86400.0


@dataclass
class Mx:
    """One mxguard "process": its clock, store, services and pipeline with only greylist."""

    clock: FakeClock
    store: Store
    services: Services
    pipeline: Pipeline

    def decide(self, facts: Facts) -> Verdict | None:
        return self.pipeline.run(Stage.RCPT, facts, self.services).decision


def make_mx(store: Store, clock: FakeClock, ini: str = ENABLED) -> Mx:
    settings = config.load("test.ini", text=ini)
    services = Services(
        site=settings.milter, dns=FakeDns(), clock=clock, notices=Notices(clock), store=store
    )
    return Mx(clock, store, services, Pipeline([(greylist.CHECK, settings.checks["greylist"])]))


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path: Path) -> Iterator[tuple[str, Store, FakeClock]]:
    clock = FakeClock(START)
    if request.param == "sqlite":
        store: Store = SqliteStore(str(tmp_path / "state.db"), clock)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore(server.url)
        store._redis.flushdb()
    yield request.param, store, clock
    store.close()


@pytest.fixture
def mx(backend: tuple[str, Store, FakeClock]) -> Mx:
    _kind, store, clock = backend
    return make_mx(store, clock)


def facts(
    ip: str = "203.0.113.9",
    sender: str = "<Bob@Sender.Example>",
    rcpt: str = "<alice@example.org>",
    findings: tuple = (),
    **connection: object,
) -> Facts:
    return Facts(
        Stage.RCPT,
        Connection(client_ip=ipaddress.ip_address(ip), **connection),  # type: ignore[arg-type]
        Envelope(sender, parse_path(sender, allow_null=True)),
        Recipient(rcpt, parse_path(rcpt)),
        findings=Findings(findings),
    )


def spf_pass(address: str) -> SpfResults:
    return SpfResults(mailfrom=SpfIdentity(address.rpartition("@")[2], "pass"))


def assert_deferred(verdict: Verdict | None, wait: str = "5 minutes") -> None:
    assert verdict is not None and verdict.action is Action.TEMPFAIL
    assert verdict.outcome == "greylist.deferred"
    assert verdict.reply is not None
    assert (verdict.reply.smtp_code, verdict.reply.dsn_code) == ("451", "4.7.1")
    assert verdict.text == f"greylist: greylisted, please try again in {wait}"


# -- the triplet --------------------------------------------------------------------------------


def test_first_attempt_is_deferred_and_early_retry_again(mx: Mx) -> None:
    assert_deferred(mx.decide(facts()))
    mx.clock.now += 60
    assert_deferred(mx.decide(facts()), "4 minutes")
    mx.clock.now += 239
    assert_deferred(mx.decide(facts()), "1 second")


def test_retry_after_the_delay_is_accepted(mx: Mx) -> None:
    assert_deferred(mx.decide(facts()))
    mx.clock.now += DELAY
    assert mx.decide(facts()) is None
    mx.clock.now += 60
    assert mx.decide(facts()) is None, "and the next message too"


def test_retry_at_the_last_moment_before_expire_is_accepted(mx: Mx) -> None:
    assert_deferred(mx.decide(facts()))
    mx.clock.now += EXPIRE
    assert mx.decide(facts()) is None


def test_triplet_not_retried_within_expire_starts_again(mx: Mx) -> None:
    assert_deferred(mx.decide(facts()))
    mx.clock.now += EXPIRE + 1
    assert_deferred(mx.decide(facts()))
    mx.clock.now += DELAY - 1
    assert_deferred(mx.decide(facts()), "1 second"), "the delay counts from the new first sight"
    mx.clock.now += 1
    assert mx.decide(facts()) is None


def test_triplet_parts_each_count_and_case_does_not(mx: Mx) -> None:
    assert_deferred(mx.decide(facts()))
    mx.clock.now += DELAY
    assert_deferred(mx.decide(facts(rcpt="<carol@example.org>")))
    assert_deferred(mx.decide(facts(ip="198.51.100.7")))
    assert mx.decide(facts(sender="<bob@sender.example>", rcpt="<Alice@EXAMPLE.org>")) is None


def test_null_sender_has_its_own_triplet(mx: Mx) -> None:
    assert_deferred(mx.decide(facts(sender="<>")))
    mx.clock.now += DELAY
    assert mx.decide(facts(sender="<>")) is None
    assert_deferred(mx.decide(facts(sender="<bob@sender.example>", rcpt="<carol@example.org>")))


def test_ipv6_clients_are_keyed_by_their_64(mx: Mx) -> None:
    assert_deferred(mx.decide(facts(ip="2001:db8:1:2::25")))
    mx.clock.now += DELAY
    assert mx.decide(facts(ip="2001:db8:1:2:ffff::9")) is None, "same /64"
    assert_deferred(mx.decide(facts(ip="2001:db8:1:3::25")))


def test_ipv4_mapped_address_counts_as_ipv4() -> None:
    assert greylist.client_network(ipaddress.ip_address("::ffff:192.0.2.77")) == "192.0.2.0/24"


# -- after a successful retry: the client network and sender domain pass for retain -------------


def test_pass_covers_the_network_and_the_sender_domain(mx: Mx) -> None:
    assert_deferred(mx.decide(facts()))
    mx.clock.now += DELAY
    assert mx.decide(facts()) is None
    # Another server of the same /24, another sender of the domain, another recipient.
    assert mx.decide(facts(ip="203.0.113.200", sender="<news@sender.example>")) is None
    assert mx.decide(facts(rcpt="<carol@example.org>")) is None
    # Not another domain, not another network.
    assert_deferred(mx.decide(facts(sender="<bob@other.example>")))
    assert_deferred(mx.decide(facts(ip="203.0.114.9")))
    # Nor a subdomain: a domain is its own identity here.
    assert_deferred(mx.decide(facts(sender="<bob@mail.sender.example>")))


def test_pass_lasts_retain_from_the_successful_retry(mx: Mx) -> None:
    assert_deferred(mx.decide(facts()))
    mx.clock.now += DELAY
    assert mx.decide(facts()) is None
    mx.clock.now += RETAIN
    assert mx.decide(facts(sender="<news@sender.example>")) is None
    mx.clock.now += 1
    assert_deferred(mx.decide(facts(sender="<news@sender.example>")))


# -- exemptions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param({"trusted": True}, id="trusted"),
        pytest.param({"auth_user": "carol", "auth_type": "PLAIN"}, id="authenticated"),
    ],
)
def test_our_own_clients_are_exempt(mx: Mx, connection: dict) -> None:
    assert mx.decide(facts(**connection)) is None


def test_access_allow_is_exempt_through_the_pipeline(mx: Mx) -> None:
    allowed = (Allowed("partner relays"),)
    assert mx.decide(facts(findings=allowed)) is None
    assert_deferred(mx.decide(facts()))


@pytest.mark.parametrize(
    ("address", "exempt"),
    [
        pytest.param("bob@sender.example", True, id="listed-domain"),
        pytest.param("bob@mail.sender.example", True, id="subdomain"),
        pytest.param("bob@other.example", False, id="other-domain"),
        pytest.param("bob@notsender.example", False, id="suffix-is-not-a-subdomain"),
    ],
)
def test_spf_pass_for_a_skip_domain_is_exempt(
    backend: tuple[str, Store, FakeClock], address: str, exempt: bool
) -> None:
    _kind, store, clock = backend
    mx = make_mx(store, clock, ENABLED + "skip_spf_pass_domains = Sender.Example.\n")
    verdict = mx.decide(facts(sender=f"<{address}>", findings=(spf_pass(address),)))
    if exempt:
        assert verdict is None
    else:
        assert_deferred(verdict)


def test_spf_other_results_or_helo_pass_are_not_exempt(mx: Mx) -> None:
    mx = make_mx(mx.store, mx.clock, ENABLED + "skip_spf_pass_domains = sender.example\n")
    softfail = SpfResults(mailfrom=SpfIdentity("sender.example", "softfail"))
    helo = SpfResults(helo=SpfIdentity("sender.example", "pass"))
    untold = CouldNotTell(SpfResults, "spf: internal error")
    assert_deferred(mx.decide(facts(findings=(softfail,))))
    assert_deferred(mx.decide(facts(rcpt="<carol@example.org>", findings=(helo,))))
    assert_deferred(mx.decide(facts(rcpt="<dave@example.org>", findings=(untold,))))


def test_recipient_the_mta_refused_is_not_greylisted(mx: Mx) -> None:
    refused = facts()
    refused = Facts(
        refused.stage,
        refused.connection,
        refused.envelope,
        Recipient("<nobody@example.org>", parse_path("<nobody@example.org>"), mta_rejected=True),
    )
    assert mx.decide(refused) is None


def test_monitor_mode_tags_instead_of_deferring(mx: Mx) -> None:
    mx = make_mx(mx.store, mx.clock, ENABLED + "mode = monitor\n")
    verdicts = mx.pipeline.run(Stage.RCPT, facts(), mx.services)
    assert verdicts.decision is None
    assert verdicts.verdicts[0].action is Action.TAG
    assert verdicts.verdicts[0].monitored is Action.TEMPFAIL


# -- a failing store ----------------------------------------------------------------------------


class BrokenStore:
    def __getattr__(self, name: str):
        def fail(*args: object) -> object:
            raise StoreError("redis redis://127.0.0.1:9/0: connection refused")

        return fail


def test_store_failure_fails_open_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    mx = make_mx(BrokenStore(), FakeClock(START))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="mxguard.notice"):
        assert mx.decide(facts()) is None
        assert mx.decide(facts()) is None
    warnings = [r for r in caplog.records if r.name == "mxguard.notice"]
    assert len(warnings) == 1, "throttled: one warning per interval"
    assert "greylist" in warnings[0].getMessage()
    assert "connection refused" in warnings[0].getMessage()


def test_store_failure_after_first_sight_fails_open(mx: Mx) -> None:
    class FailingGet:
        def __init__(self, inner: Store) -> None:
            self.inner = inner

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

        def put_new(self, key: str, value: str, ttl: float) -> bool:
            return False

        def get(self, key: str) -> str | None:
            raise StoreError("sqlite state.db: disk I/O error")

    broken = make_mx(FailingGet(mx.store), mx.clock)  # type: ignore[arg-type]
    assert broken.decide(facts()) is None


# -- two mxguard processes sharing one Redis ----------------------------------------------------


def test_two_processes_sharing_redis_see_the_same_triplets(redis_server: RedisServer) -> None:
    first_store, second_store = RedisStore(redis_server.url), RedisStore(redis_server.url)
    first_store._redis.flushdb()
    clock_one, clock_two = FakeClock(START), FakeClock(START)
    first, second = make_mx(first_store, clock_one), make_mx(second_store, clock_two)
    try:
        assert_deferred(first.decide(facts()))
        clock_two.now += 60
        assert_deferred(second.decide(facts()), "4 minutes")
        clock_two.now += DELAY
        assert second.decide(facts()) is None
        # The pass the second one recorded is seen by the first.
        clock_one.now += DELAY + 120
        assert first.decide(facts(ip="203.0.113.10", sender="<x@sender.example>")) is None
    finally:
        first_store.close()
        second_store.close()


# -- configuration ------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = config.load("test.ini", text="").checks["greylist"]
    assert settings.enabled is False
    assert (settings.delay, settings.expire, settings.retain) == (DELAY, EXPIRE, RETAIN)
    assert settings.skip_spf_pass_domains == ()
    assert greylist.CHECK not in [
        check for check, _s in config.load("t.ini", text="").ordered_checks()
    ]


def test_settings_are_read() -> None:
    text = (
        "[greylist]\nenabled = yes\ndelay = 2s\nexpire = 1h\nretain = 7d\n"
        "skip_spf_pass_domains = Gmail.com, outlook.com.\n"
    )
    settings = config.load("test.ini", text=text).checks["greylist"]
    assert settings.enabled is True
    assert (settings.delay, settings.expire, settings.retain) == (2, 3600, 7 * 86400)
    assert settings.skip_spf_pass_domains == ("gmail.com", "outlook.com")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[greylist]\ndelay = soon",
            "test.ini: [greylist] delay: expected a duration such as 3s, 1.5s, 5m, 2h or 7d, "
            "got 'soon'",
            id="delay",
        ),
        pytest.param(
            "[greylist]\nexpire = 0s", "test.ini: [greylist] expire: expected a duration", id="zero"
        ),
        pytest.param(
            "[greylist]\nretain = -1d", "test.ini: [greylist] retain: expected a duration", id="neg"
        ),
        pytest.param(
            "[greylist]\nenabled = sometimes",
            "test.ini: [greylist] enabled: expected yes/no/true/false/on/off/1/0, got 'sometimes'",
            id="enabled",
        ),
        pytest.param(
            "[greylist]\nskip_spf_pass_domains = gmail.com, not a domain",
            "test.ini: [greylist] skip_spf_pass_domains: expected a comma-separated list of "
            "domain names",
            id="domains",
        ),
        pytest.param(
            "[greylist]\ndelya = 5m",
            "test.ini: [greylist] delya: unknown option; did you mean 'delay'?",
            id="typo",
        ),
    ],
)
def test_bad_values_name_file_section_and_option(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.load("test.ini", text=text)
    assert message in str(raised.value)


def test_expire_not_longer_than_delay_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    settings = config.load("t.ini", text="[greylist]\nenabled = yes\ndelay = 1h\nexpire = 1h")
    with caplog.at_level(logging.WARNING, logger="mxguard.greylist"):
        Pipeline(settings.ordered_checks())
    assert "no retry can pass" in caplog.text
