"""The INI schema: defaults, value types, and errors that name file, section and option."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from mxguard.checks import ALL_CHECKS
from mxguard.core import config
from mxguard.core.errors import ConfigError
from mxguard.core.options import Mode
from mxguard.tools import docgen

ROOT = Path(__file__).resolve().parents[2]
CHECK_NAMES = [check.name for check in ALL_CHECKS]
ON_BY_DEFAULT = [check.name for check in ALL_CHECKS if check.settings().enabled]


def load(text: str) -> config.Settings:
    return config.load("test.ini", text=text)


def test_defaults_without_any_file_content() -> None:
    settings = load("")
    assert settings.milter.socket == "unix:/run/mxguard/mxguard.sock"
    assert settings.milter.user == "mxguard"
    assert settings.milter.mode is Mode.ENFORCE
    assert settings.milter.trusted_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert settings.dns.timeout == 3.0
    assert settings.dns.cache_size == 10000
    assert settings.state.url == "sqlite:////var/lib/mxguard/state.db"
    assert settings.checks["relay"].enabled is True
    # Postfix gives up after milter_content_timeout (300s): a silent connection is dead.
    assert settings.milter.timeout == 600.0
    assert settings.milter.stop_timeout == 10.0


@pytest.mark.parametrize(
    ("text", "attribute", "expected"),
    [
        pytest.param("[dns]\ntimeout = 1.5s", ("dns", "timeout"), 1.5, id="seconds"),
        pytest.param("[dns]\ntimeout = 2m", ("dns", "timeout"), 120.0, id="minutes"),
        pytest.param("[milter]\ntimeout = 1h", ("milter", "timeout"), 3600.0, id="hours"),
        pytest.param("[milter]\ntimeout = 2d", ("milter", "timeout"), 172800.0, id="days"),
        pytest.param("[dns]\ntimeout = 4", ("dns", "timeout"), 4.0, id="bare-number"),
        pytest.param(
            "[dns]\nnameservers = 127.0.0.1:5353, ::1, [::1]:5300",
            ("dns", "nameservers"),
            (("127.0.0.1", 5353), ("::1", 53), ("::1", 5300)),
            id="nameservers",
        ),
        pytest.param(
            "[milter]\nlocal_domains = Example.ORG., bücher.example",
            ("milter", "local_domains"),
            ("example.org", "xn--bcher-kva.example"),
            id="domains-normalised",
        ),
        pytest.param(
            "[milter]\ntrusted_networks = 10.0.0.0/8, 2001:db8::/32, 192.0.2.7",
            ("milter", "trusted_networks"),
            (
                ipaddress.ip_network("10.0.0.0/8"),
                ipaddress.ip_network("2001:db8::/32"),
                ipaddress.ip_network("192.0.2.7/32"),
            ),
            id="networks",
        ),
        pytest.param("[milter]\nmode = MONITOR", ("milter", "mode"), Mode.MONITOR, id="mode"),
        pytest.param(
            "[milter]\nsocket = unix:/run/mxguard/mxguard.sock",
            ("milter", "socket"),
            "unix:/run/mxguard/mxguard.sock",
            id="unix-socket",
        ),
        pytest.param(
            "[state]\nurl = redis://127.0.0.1:6379/0",
            ("state", "url"),
            "redis://127.0.0.1:6379/0",
            id="redis-url",
        ),
    ],
)
def test_values_are_parsed_to_types(
    text: str, attribute: tuple[str, str], expected: object
) -> None:
    section, name = attribute
    assert getattr(getattr(load(text), section), name) == expected


@pytest.mark.parametrize("word", ["yes", "no", "true", "false", "on", "off", "1", "0", "YES"])
def test_booleans(word: str) -> None:
    enabled = load(f"[relay]\nenabled = {word}").checks["relay"].enabled
    assert enabled is (word.lower() in ("yes", "true", "on", "1"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[dns]\ntimout = 3s",
            "test.ini: [dns] timout: unknown option; did you mean 'timeout'?",
            id="option-typo",
        ),
        pytest.param(
            "[dsn]\ntimeout = 3s",
            "test.ini: [dsn]: unknown section; did you mean [dns]?",
            id="section-typo",
        ),
        pytest.param(
            "[dns]\ntimeout = fast",
            "test.ini: [dns] timeout: expected a duration such as 3s, 1.5s, 5m, 2h or 7d, "
            "got 'fast'",
            id="bad-duration",
        ),
        pytest.param(
            "[dns]\ntimeout = 0s", "test.ini: [dns] timeout: expected a duration", id="zero"
        ),
        pytest.param(
            "[relay]\nenabled = maybe",
            "test.ini: [relay] enabled: expected yes/no/true/false/on/off/1/0, got 'maybe'",
            id="bad-boolean",
        ),
        pytest.param(
            "[milter]\ntrusted_networks = 10.0.0.0/33",
            "test.ini: [milter] trusted_networks: expected a comma-separated list of IPv4/IPv6",
            id="bad-network",
        ),
        pytest.param(
            "[milter]\nmode = enforcing",
            "test.ini: [milter] mode: expected enforce or monitor, got 'enforcing'",
            id="bad-mode",
        ),
        pytest.param(
            "[milter]\nsocket = tcp:25",
            "test.ini: [milter] socket: expected unix:/path/to/socket, or inet:PORT@HOST "
            "(without @HOST: loopback)",
            id="bad-socket",
        ),
        pytest.param(
            "[dns]\nnameservers = dns.example:53",
            "test.ini: [dns] nameservers: expected a comma-separated list of IP addresses",
            id="nameserver-not-ip",
        ),
        pytest.param(
            "[dns]\ncache_size = -1",
            "test.ini: [dns] cache_size: expected a whole number",
            id="negative",
        ),
        pytest.param(
            "[milter]\norder = relai",
            "test.ini: [milter] order: expected check names ("
            + ", ".join(CHECK_NAMES)
            + "), got 'relai'; "
            "did you mean 'relay'?",
            id="bad-order",
        ),
        pytest.param(
            "[DEFAULT]\nmode = monitor", "test.ini: [DEFAULT]: unknown section", id="no-default"
        ),
        pytest.param(
            "[dns]\ntimeout = 1s\ntimeout = 2s",
            "test.ini: [dns] timeout: set twice",
            id="duplicate-option",
        ),
        pytest.param(
            "timeout = 1s", "test.ini: line 1: an option before any [section]", id="no-section"
        ),
        pytest.param(
            "[state]\nurl = postgres://x",
            "test.ini: [state] url: expected sqlite:///",
            id="bad-url",
        ),
    ],
)
def test_errors_name_file_section_option_and_expectation(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(text)
    assert str(raised.value).startswith(message)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        load("[dns]\ntimout = 1s\ncache_size = many\n[milter]\nmode = x\n")
    assert len(str(raised.value).splitlines()) == 3


@pytest.mark.parametrize(
    "text",
    [
        "[dkim_sign]\nkey_table = /etc/mxguard/\ud800keys\n",
        "[dkim_sign]\ndomain = example.org\nselector = s\nkey = /etc/\udcff.key\n",
        "[access]\nfiles = /etc/mxguard/access, /etc/\udc80\n",
    ],
)
def test_a_lone_surrogate_in_a_path_is_a_config_error(text: str) -> None:
    """Found by fuzzing: key_table = "\ud800" escaped load() as UnicodeEncodeError."""
    with pytest.raises(ConfigError, match=r"expected a (file path|comma-separated list of file)"):
        load(text)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.ini: cannot read"):
        config.load(str(tmp_path / "missing.ini"))


def test_check_mode_inherits_the_milter_mode_unless_set() -> None:
    assert load("[milter]\nmode = monitor").checks["relay"].mode is Mode.MONITOR
    settings = load("[milter]\nmode = monitor\n[relay]\nmode = enforce")
    assert settings.checks["relay"].mode is Mode.ENFORCE


def test_authserv_id_defaults_to_first_hostname() -> None:
    settings = load("[milter]\nhostnames = mx1.example.org, mx2.example.org")
    assert settings.milter.authserv_id == "mx1.example.org"


def test_disabled_checks_are_not_in_the_pipeline_order() -> None:
    assert [c.name for c, _ in load("").ordered_checks()] == ON_BY_DEFAULT
    without_relay = [c.name for c, _ in load("[relay]\nenabled = no").ordered_checks()]
    assert without_relay == [name for name in ON_BY_DEFAULT if name != "relay"]


def test_order_moves_checks_and_keeps_the_rest_in_default_order() -> None:
    last = ON_BY_DEFAULT[-1]
    names = [c.name for c, _ in load(f"[milter]\norder = {last}").ordered_checks()]
    assert names == [last] + [name for name in ON_BY_DEFAULT if name != last]


def test_empty_local_domains_warns() -> None:
    assert any("local_domains is empty" in w for w in load("").warnings())
    ours = "[milter]\nlocal_domains = example.org\nhostnames = mx.example.org"
    assert load(ours).warnings() == []


def test_inline_comments_are_allowed() -> None:
    assert load("[dns]\ntimeout = 2s   ; seconds").dns.timeout == 2.0


def test_effective_values_round_trip_through_the_loader() -> None:
    settings = load("[milter]\nlocal_domains = example.org\n[dns]\ntimeout = 90s\n")
    text = "\n".join(
        f"[{section}]\n" + "\n".join(f"{k} = {v}" for k, v in values.items())
        for section, values in config.effective_values(settings).items()
    )
    again = load(text)
    assert again.milter == settings.milter
    assert again.dns == settings.dns
    assert dict(again.checks) == dict(settings.checks)


def test_sample_ini_is_generated_from_the_schema() -> None:
    shipped = (ROOT / "contrib" / "mxguard.ini").read_text(encoding="utf-8")
    assert shipped == docgen.render_ini(), (
        "contrib/mxguard.ini is stale: python -m mxguard.tools.docgen"
    )


def test_readme_reference_is_generated_from_the_schema() -> None:
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    assert docgen.splice_reference(readme) == readme, (
        "README.rst option reference is stale: python -m mxguard.tools.docgen"
    )


def test_sample_ini_loads_to_the_defaults() -> None:
    shipped = config.load(str(ROOT / "contrib" / "mxguard.ini"))
    assert shipped.milter == load("").milter
    assert dict(shipped.checks) == dict(load("").checks)


def test_every_option_has_a_doc_line() -> None:
    from mxguard.core.options import specs

    for name, (cls, doc) in config.sections().items():
        assert doc, name
        for spec in specs(cls):
            assert spec.doc and "\n" not in spec.doc, f"[{name}] {spec.name}"


def test_man_page_of_the_ini_is_generated_from_the_schema() -> None:
    shipped = (Path(__file__).resolve().parents[2] / "man" / "mxguard.ini.5").read_text()
    assert shipped == docgen.render_man_ini(), (
        "man/mxguard.ini.5 is stale: python -m mxguard.tools.docgen"
    )


@pytest.mark.parametrize("page", ["mxguard.8", "mxguard.ini.5"])
def test_man_pages_render_without_warnings(page: str) -> None:
    path = Path(__file__).resolve().parents[2] / "man" / page
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "[dkim_sign]" in path.read_text() or page == "mxguard.8"
