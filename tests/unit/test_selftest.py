"""The start-up self-test: canned DNS through dnspython, the synthetic transactions, and what
it reports (problems that stop startup, warnings that do not)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mxguard.core import config
from mxguard.core.dns import Found, NotFound, Resolver
from mxguard.core.errors import ConfigError
from mxguard.core.pipeline import Pipeline
from mxguard.core.store import SqliteStore
from mxguard.daemon import preload, readability, selftest
from mxguard.daemon.canned_dns import CannedServer

RECORDS = [
    ("a.example.", "CNAME", "b.example."),
    ("b.example.", "A", "192.0.2.1"),
    ("b.example.", "TXT", '"v=spf1 -all"'),
    ("c.example.", "MX", "10 b.example."),
]


def load(text: str = "", path: str = "test.ini") -> config.Settings:
    return config.load(path, text="[milter]\nlocal_domains = example.org\n" + text)


@pytest.fixture
def canned() -> Resolver:
    resolver = Resolver(servers=[CannedServer(RECORDS)], cache_size=0, metered=False)
    yield resolver
    resolver.close(wait=True)


def test_canned_answers_come_through_dnspython_as_real_ones(canned: Resolver) -> None:
    assert canned.lookup("a.example", "A") == Found(("192.0.2.1",), 300)  # CNAME followed
    assert canned.lookup("c.example", "MX") == Found(((10, "b.example"),), 300)
    assert canned.lookup("b.example", "TXT") == Found(((b"v=spf1 -all",),), 300)
    assert canned.lookup("b.example", "AAAA") == NotFound(nxdomain=False)
    assert canned.lookup("nowhere.example", "A") == NotFound(nxdomain=True)


def test_the_synthetic_transactions_pass_every_default_check() -> None:
    settings = load()
    assert selftest.run_transactions(settings, Pipeline(settings.ordered_checks())) is None


def test_every_check_enabled_and_signing_configured_passes_too(tmp_path: Path) -> None:
    key = Path(__file__).resolve().parents[1] / "data" / "dkim" / "test.private"
    copy = tmp_path / "key.pem"
    copy.write_bytes(key.read_bytes())
    copy.chmod(0o600)
    settings = load(
        "[dnsbl]\nzones = zen.example=3\n[rhsbl]\nzones = dbl.example=3\n"
        f"[dkim_sign]\ndomain = example.org\nselector = s\nkey = {copy}\n"
        "[backscatter]\nbatv_secret = 0123456789abcdef0123456789abcdef\n"
    )
    assert selftest.run_transactions(settings, Pipeline(settings.ordered_checks())) is None


def test_a_check_that_raises_is_a_failure_naming_it() -> None:
    def broken(*_args: object) -> None:
        raise LookupError("unknown encoding: punycode")

    settings = load()
    checks = [
        (dataclasses.replace(check, stages=dict.fromkeys(check.stages, broken)), options)
        if check.name == "spf"
        else (check, options)
        for check, options in settings.ordered_checks()
    ]
    failure = selftest.run_transactions(settings, Pipeline(checks))
    assert failure is not None
    assert "check=spf: internal error: LookupError: unknown encoding: punycode" in str(failure)


def test_dkim_that_does_not_verify_the_rfc_8463_example_is_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An incompatible dkimpy shows itself at start-up, not as a deferral of signed mail."""
    monkeypatch.setattr(selftest, "DKIM_KEYS", ())  # no key: permerror, not pass
    settings = load()
    failure = selftest.run_transactions(settings, Pipeline(settings.ordered_checks()))
    assert failure is not None and "did not verify" in str(failure)


def test_a_store_that_takes_no_write_stops_startup(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()  # not a database file
    settings = load(path=str(tmp_path / "test.ini"))
    store = SqliteStore(str(tmp_path / "state.db"))
    report = selftest.check(settings, Pipeline(settings.ordered_checks()), store)
    assert any("[state] url: sqlite" in problem for problem in report.problems), report


def test_a_configuration_file_nobody_can_read_again_is_a_warning(tmp_path: Path) -> None:
    settings = load(path=str(tmp_path / "gone.ini"))  # not there: a reload cannot read it
    report = selftest.check(settings, Pipeline(settings.ordered_checks()))
    assert report.problems == ()
    assert any("a reload (SIGUSR1) will be refused" in warning for warning in report.warnings)


def test_the_first_directory_that_blocks_the_way_is_named(tmp_path: Path) -> None:
    assert readability._first_blocked(tmp_path / "missing" / "deeper") == ""
    assert readability.unreadable_install() == ""  # root reads everything


def test_preload_imports_what_is_loaded_on_first_use() -> None:
    import sys

    failed = preload.preload()
    for name in ("dns.rdtypes.IN.A", "dns.rdtypes.ANY.PTR", "encodings.punycode",
                 "encodings.idna", "idna.uts46data", "email._header_value_parser"):  # fmt: skip
        assert name in sys.modules, name
    assert "mxguard.__main__" not in sys.modules and "mxguard.__main__" not in failed


def test_a_prepare_that_raises_is_a_config_error_naming_the_check() -> None:
    settings = load()
    check, options = settings.ordered_checks()[0]

    def prepare(_settings: object) -> None:
        raise ValueError("embedded null byte")

    with pytest.raises(ConfigError, match=r"^test.ini: \[access\]: cannot be set up: embedded"):
        Pipeline([(dataclasses.replace(check, prepare=prepare), options)], source="test.ini")
