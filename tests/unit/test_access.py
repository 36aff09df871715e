"""Access lists: the file parser, the lookups and their precedence, and the access check through
the pipeline (allow skips later inbound checks, deny refuses with the file's text)."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from pathlib import Path

import pytest

from mxguard.checks import access, helo, relay
from mxguard.core import config
from mxguard.core.check import INBOUND, OUR_CLIENTS, Check
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Envelope, Facts, Recipient, Stage
from mxguard.core.options import CheckSettings, Mode
from mxguard.core.pipeline import Pipeline
from mxguard.core.verdict import Action, Verdict, reject
from mxguard.mail import accesslist
from mxguard.mail.accesslist import KeyKind
from mxguard.mail.address import parse_path

from .fakes import services

ip = ipaddress.ip_address
ROOT = Path(__file__).resolve().parents[2]


def parse(text: str) -> accesslist.Parsed:
    return accesslist.parse(text, "acl")


def table(text: str) -> accesslist.Table:
    parsed = parse(text)
    assert parsed.problems == ()
    built, _ = accesslist.build(parsed.entries)
    return built


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("key", "kind", "normalised"),
    [
        pytest.param("192.0.2.7", KeyKind.NETWORK, (4, 32, int(ip("192.0.2.7"))), id="ipv4"),
        pytest.param("192.0.2.0/24", KeyKind.NETWORK, (4, 24, int(ip("192.0.2.0"))), id="cidr4"),
        pytest.param("0.0.0.0/0", KeyKind.NETWORK, (4, 0, 0), id="everything"),
        pytest.param("2001:DB8::1", KeyKind.NETWORK, (6, 128, int(ip("2001:db8::1"))), id="ipv6"),
        pytest.param("2001:db8::/32", KeyKind.NETWORK, (6, 32, int(ip("2001:db8::"))), id="cidr6"),
        pytest.param("example.com", KeyKind.HOST, "example.com", id="host"),
        pytest.param("Mail.Example.COM.", KeyKind.HOST, "mail.example.com", id="host-case-dot"),
        pytest.param("bücher.example", KeyKind.HOST, "xn--bcher-kva.example", id="host-idn"),
        pytest.param(".example.com", KeyKind.SUBDOMAIN, "example.com", id="subdomains"),
        pytest.param("User@Example.COM", KeyKind.ADDRESS, "user@example.com", id="address"),
        pytest.param('"j.q"@example.com', KeyKind.ADDRESS, "j.q@example.com", id="quoted"),
        pytest.param("postmaster@", KeyKind.LOCAL_PART, "postmaster", id="local-part"),
        pytest.param("@Example.COM", KeyKind.DOMAIN, "example.com", id="domain"),
    ],
)
def test_each_key_kind(key: str, kind: KeyKind, normalised: object) -> None:
    parsed = parse(f"{key} deny")
    assert parsed.problems == ()
    (entry,) = parsed.entries
    assert (entry.kind, entry.key, entry.written, entry.allow) == (kind, normalised, key, False)
    assert entry.where == "acl:1"


@pytest.mark.parametrize(
    ("line", "allow", "text"),
    [
        pytest.param("192.0.2.1 allow", True, "", id="allow"),
        pytest.param("192.0.2.1 ALLOW partner relay", True, "partner relay", id="allow-note"),
        pytest.param("192.0.2.1 Deny", False, "", id="deny-no-text"),
        pytest.param("192.0.2.1\tdeny\tgo  away  ", False, "go  away", id="tabs-spaces"),
        pytest.param("192.0.2.1 deny see ticket #42", False, "see ticket #42", id="hash-in-text"),
        pytest.param("  192.0.2.1 deny indented", False, "indented", id="indented"),
        pytest.param("192.0.2.1 deny 100% spam", False, "100% spam", id="percent"),
    ],
)
def test_action_and_text(line: str, allow: bool, text: str) -> None:
    (entry,) = parse(line).entries
    assert (entry.allow, entry.text) == (allow, text)


def test_comments_and_blank_lines_are_ignored() -> None:
    parsed = parse("# a comment\n\n   \n\t# indented comment\r\n192.0.2.1 allow\r\n")
    assert parsed.problems == ()
    assert [entry.where for entry in parsed.entries] == ["acl:5"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        pytest.param("192.0.2.1/24 deny", "did you mean 192.0.2.0/24?", id="host-bits"),
        pytest.param("192.0.2.0/33 deny", "not an IP address or CIDR network", id="prefix-33"),
        pytest.param("192.0.2.300 deny", "not an IP address or CIDR network", id="octet-300"),
        pytest.param("1.2.3 allow", "not an IP address or CIDR network", id="three-octets"),
        pytest.param("2001:db8::g deny", "not an IP address or CIDR network", id="bad-v6"),
        pytest.param("example.com maybe", "'maybe': unknown action", id="unknown-action"),
        pytest.param("example.com OK", "'OK': unknown action", id="postfix-action"),
        pytest.param("example.com", "missing action", id="no-action"),
        pytest.param("exa_mple.com allow", "invalid character in domain", id="underscore"),
        pytest.param("example..com allow", "empty label in domain", id="double-dot"),
        pytest.param("[192.0.2.1] allow", "address literal", id="literal"),
        pytest.param("x@[192.0.2.1] deny", "address literal in a sender key", id="sender-lit"),
        pytest.param("@ deny", "empty sender key", id="bare-at"),
        pytest.param("a..b@example.com deny", "consecutive dots", id="bad-local-part"),
        pytest.param("@bad..example deny", "empty label in domain", id="bad-domain"),
        pytest.param("a@b@example.com deny", "invalid character in domain", id="two-ats"),
        pytest.param("\udcff.example allow", "not UTF-8 text", id="not-utf8"),
    ],
)
def test_broken_lines_are_reported_with_file_and_line(line: str, problem: str) -> None:
    parsed = parse(f"# header\n192.0.2.1 allow\n{line}\n198.51.100.1 deny\n")
    (reported,) = parsed.problems
    assert reported.startswith("acl:3: ")
    assert problem in reported
    # The rest of the file still applies.
    assert [entry.written for entry in parsed.entries] == ["192.0.2.1", "198.51.100.1"]


def test_line_numbers_count_newlines_only() -> None:
    # A form feed or vertical tab inside a line must not shift the numbers the admin is told.
    parsed = parse("192.0.2.1 allow a\x0cb\n\x0b\nbroken\n")
    assert parsed.problems == ("acl:3: 'broken': missing action (allow or deny)",)


def test_non_ascii_reply_text_falls_back_to_the_default() -> None:
    parsed = parse("192.0.2.1 deny Zugriff verweigert für Sie\n")
    (entry,) = parsed.entries
    assert entry.text == ""
    assert parsed.problems == ("acl:1: reply text is not ASCII; the default text is used",)


def test_control_characters_in_text_are_made_printable() -> None:
    (entry,) = parse("192.0.2.1 deny bad\x1bnews\n").entries
    assert entry.text == "bad?news"


def test_a_key_listed_twice_is_reported() -> None:
    first = accesslist.parse("example.com allow\n192.0.2.1 deny\n", "one")
    second = accesslist.parse("\nEXAMPLE.COM. deny\n192.0.2.1 deny\n", "two")
    _, problems = accesslist.build(first.entries + second.entries)
    assert problems == (
        "two:2: 'EXAMPLE.COM.' is also listed at one:1; deny wins",
        "two:3: '192.0.2.1' is also listed at one:2",
    )


def test_the_example_file_parses_cleanly() -> None:
    built, problems = access.read_files([str(ROOT / "contrib" / "access.example")])
    assert problems == ()
    assert len(built) > 5


# --------------------------------------------------------------------------- precedence

PRECEDENCE = table(
    """
192.0.2.0/24          allow net24
192.0.2.128/25        deny  net25
192.0.2.200           allow host32
2001:db8::/32         deny  v6net
example.com           allow bare
.example.com          deny  dotted
mail.partner.example  allow partner-host
partner.example       deny  partner-domain
sender@x.example      deny  exact
postmaster@           allow local
@x.example            allow domain
@tie.example          allow
@tie.example          deny  tie
"""
)
NOBODY = ("198.51.100.1", "unknown", "", "")


@pytest.mark.parametrize(
    ("client_ip", "client_name", "local", "domain", "decided_by"),
    [
        pytest.param("192.0.2.1", "", "", "", "net24", id="cidr"),
        pytest.param("192.0.2.129", "", "", "", "net25", id="longer-prefix-wins"),
        pytest.param("192.0.2.200", "", "", "", "host32", id="single-address-wins"),
        pytest.param("::ffff:192.0.2.129", "", "", "", "net25", id="v4-mapped"),
        pytest.param("2001:db8:1::1", "", "", "", "v6net", id="ipv6"),
        pytest.param("198.51.100.1", "example.com", "", "", "bare", id="bare-name-itself"),
        pytest.param("198.51.100.1", "a.example.com", "", "", "dotted", id="deny-wins-tie"),
        pytest.param("198.51.100.1", "MAIL.Partner.Example.", "", "", "partner-host", id="exact"),
        pytest.param("198.51.100.1", "smtp.partner.example", "", "", "partner-domain", id="suffix"),
        pytest.param("198.51.100.1", "a.b.partner.example", "", "", "partner-domain", id="deep"),
        pytest.param("198.51.100.1", "", "sender", "x.example", "exact", id="sender-exact"),
        pytest.param("198.51.100.1", "", "Sender", "X.Example", "exact", id="sender-case"),
        pytest.param("198.51.100.1", "", "postmaster", "x.example", "local", id="user@-over-@dom"),
        pytest.param("198.51.100.1", "", "other", "x.example", "domain", id="at-domain"),
        pytest.param("198.51.100.1", "", "a", "tie.example", "tie", id="sender-tie-deny"),
        # Client entries decide before sender entries; the address before the name.
        pytest.param("192.0.2.1", "", "sender", "x.example", "net24", id="client-over-sender"),
        pytest.param("198.51.100.1", "example.com", "sender", "x.example", "bare", id="name-first"),
        pytest.param("192.0.2.129", "mail.partner.example", "", "", "net25", id="ip-over-name"),
    ],
)
def test_most_specific_entry_decides(
    client_ip: str, client_name: str, local: str, domain: str, decided_by: str
) -> None:
    match = accesslist.lookup(PRECEDENCE, ip(client_ip), client_name, local, domain)
    assert match is not None and match.entry.text == decided_by


@pytest.mark.parametrize(
    ("client_name", "local", "domain"),
    [
        pytest.param("unknown", "", "", id="postfix-unknown"),
        pytest.param("[198.51.100.1]", "", "", id="bracketed-ip"),
        pytest.param("notexample.com", "", "", id="not-a-label-boundary"),
        pytest.param("com", "", "", id="parent-of-key"),
        pytest.param("", "a", "sub.x.example", id="domain-is-exact"),
        pytest.param("", "", "x.example", id="null-sender"),
    ],
)
def test_no_entry_matches(client_name: str, local: str, domain: str) -> None:
    assert accesslist.lookup(PRECEDENCE, ip("198.51.100.1"), client_name, local, domain) is None


def test_no_client_address() -> None:
    assert accesslist.lookup(PRECEDENCE, None, "", "", "") is None
    assert accesslist.lookup(accesslist.EMPTY, ip("192.0.2.1"), "a.example.com", "a", "b") is None


# --------------------------------------------------------------------------- the check

OUTSIDER = Connection(
    client_ip=ip("203.0.113.9"),
    client_name="mail.sender.example",
    helo="mx.example.org",  # forged: the helo check would refuse it
    interface_ip=ip("198.51.100.25"),
)
SITE = "[milter]\nhostnames = mx.example.org\nlocal_domains = example.org\n"


def write(tmp_path: Path, text: str, name: str = "access") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def load(files: str, extra: str = "") -> config.Settings:
    return config.load("t.ini", text=f"{SITE}[access]\nfiles = {files}\n{extra}")


def mail_facts(sender: str = "<x@sender.example>", connection: Connection = OUTSIDER) -> Facts:
    return Facts(Stage.MAIL, connection, Envelope(sender, parse_path(sender, allow_null=True)))


def run_access(
    files: str, facts: Facts | None = None, extra: str = ""
) -> tuple[Verdict | None, tuple[Verdict, ...]]:
    settings = load(files, extra)
    pipeline = Pipeline([(access.CHECK, settings.checks["access"])])
    result = pipeline.run(Stage.MAIL, facts or mail_facts(), services(SITE))
    return result.decision, result.verdicts


def fake_check(name: str, calls: list[str], inbound: bool = True) -> Check:
    """A check that refuses at MAIL and RCPT and records that it ran; ``inbound``: honours
    an access-list allow (else only our own clients are exempt, as for the relay check)."""

    def run(facts: Facts, settings: object, svc: object) -> Verdict:
        calls.append(f"{name}@{facts.stage}")
        return reject(name, "bad", "no")

    return Check(
        name=name,
        summary=name,
        settings=CheckSettings,
        stages={Stage.MAIL: run, Stage.RCPT: run},
        exempt=INBOUND if inbound else OUR_CLIENTS,
    )


def test_allow_skips_later_inbound_checks_but_not_a_non_inbound_one(tmp_path: Path) -> None:
    files = write(tmp_path, "203.0.113.0/24 allow partner\n")
    calls: list[str] = []
    enforce = CheckSettings(mode=Mode.ENFORCE)
    pipeline = Pipeline(
        [
            (access.CHECK, load(files).checks["access"]),
            (fake_check("dnsbl", calls), enforce),
            (fake_check("relayish", calls, inbound=False), enforce),
        ]
    )
    result = pipeline.run(Stage.MAIL, mail_facts(), services(SITE))
    assert calls == ["relayish@mail"]
    assert result.decision is not None and result.decision.check == "relayish"
    allowed = result.verdicts[0]
    assert (allowed.action, allowed.outcome) == (Action.ALLOW, "access.allow")
    assert allowed.reason == "203.0.113.9 matches 203.0.113.0/24: partner"
    # At RCPT the allow of MAIL is an earlier finding of the transaction: still skipped.
    rcpt = dataclasses.replace(
        mail_facts(),
        stage=Stage.RCPT,
        recipient=Recipient("<a@example.org>", parse_path("<a@example.org>")),
        findings=result.findings,
    )
    pipeline.run(Stage.RCPT, rcpt, services(SITE))
    assert calls == ["relayish@mail", "relayish@rcpt"]


def test_allow_with_the_real_checks_skips_helo_but_never_opens_the_relay(tmp_path: Path) -> None:
    settings = load(write(tmp_path, "mail.sender.example allow\n"))
    pipeline = Pipeline(
        [(check, settings.checks[check.name]) for check in (access.CHECK, relay.CHECK, helo.CHECK)]
    )
    at_mail = pipeline.run(Stage.MAIL, mail_facts(), services(SITE))
    assert at_mail.decision is None
    assert [v.outcome for v in at_mail.verdicts] == ["access.allow"]
    off_site = dataclasses.replace(
        mail_facts(),
        stage=Stage.RCPT,
        recipient=Recipient("<victim@elsewhere.example>", parse_path("<victim@elsewhere.example>")),
        findings=at_mail.findings,
    )
    at_rcpt = pipeline.run(Stage.RCPT, off_site, services(SITE))
    assert at_rcpt.decision is not None
    assert at_rcpt.decision.outcome == "relay.foreign-domain"


def test_without_the_allow_the_forged_helo_is_refused(tmp_path: Path) -> None:
    settings = load(write(tmp_path, "other.example allow\n"))
    pipeline = Pipeline([(c, settings.checks[c.name]) for c in (access.CHECK, helo.CHECK)])
    result = pipeline.run(Stage.MAIL, mail_facts(), services(SITE))
    assert result.decision is not None and result.decision.outcome == "helo.forged"


@pytest.mark.parametrize(
    ("line", "text"),
    [
        pytest.param("203.0.113.9 deny you are not welcome here", "you are not welcome here"),
        pytest.param("203.0.113.9 deny", "access denied", id="default-text"),
        pytest.param(".sender.example DENY no thanks", "no thanks", id="client-name"),
        pytest.param("x@sender.example deny forged", "forged", id="sender"),
    ],
)
def test_deny_refuses_with_the_files_text(tmp_path: Path, line: str, text: str) -> None:
    decision, _ = run_access(write(tmp_path, line + "\n"))
    assert decision is not None and decision.action is Action.REJECT
    assert decision.outcome == "access.deny"
    assert decision.reply is not None
    assert (decision.reply.smtp_code, decision.reply.dsn_code) == ("550", "5.7.1")
    assert decision.text == f"access: {text}"


@pytest.mark.parametrize(
    ("connection", "denied"),
    [
        pytest.param(dataclasses.replace(OUTSIDER, auth_user="carol"), False, id="authenticated"),
        pytest.param(dataclasses.replace(OUTSIDER, trusted=True), True, id="trusted"),
        pytest.param(OUTSIDER, True, id="outsider"),
    ],
)
def test_deny_spares_authenticated_clients_only(
    tmp_path: Path, connection: Connection, denied: bool
) -> None:
    files = write(tmp_path, "203.0.113.0/24 deny dynamic range\n")
    decision, verdicts = run_access(files, mail_facts(connection=connection))
    assert (decision is not None) is denied
    if not denied:
        assert verdicts == ()


def test_allow_applies_to_authenticated_clients_too(tmp_path: Path) -> None:
    facts = mail_facts(connection=dataclasses.replace(OUTSIDER, auth_user="carol"))
    _, verdicts = run_access(write(tmp_path, "203.0.113.9 allow\n"), facts)
    assert [v.action for v in verdicts] == [Action.ALLOW]


@pytest.mark.parametrize(
    "sender",
    [
        pytest.param("<>", id="null-sender"),
        pytest.param("<not an address>", id="unparseable"),
        pytest.param("<x@[203.0.113.9]>", id="literal-domain"),
    ],
)
def test_senders_without_a_domain_match_only_client_entries(tmp_path: Path, sender: str) -> None:
    files = write(tmp_path, "@sender.example deny\nx@ deny\n203.0.113.9 allow\n")
    decision, verdicts = run_access(files, mail_facts(sender))
    assert decision is None and [v.outcome for v in verdicts] == ["access.allow"]
    files = write(tmp_path, "x@ deny\n", "senders-only")
    assert run_access(files, mail_facts(sender)) == (None, ())


def test_monitor_mode_turns_a_deny_into_a_tag(tmp_path: Path) -> None:
    decision, (verdict,) = run_access(
        write(tmp_path, "203.0.113.9 deny\n"), extra="mode = monitor\n"
    )
    assert decision is None
    assert (verdict.action, verdict.monitored) == (Action.TAG, Action.REJECT)


def test_nothing_to_decide_without_files() -> None:
    settings = config.load("t.ini", text="")
    assert settings.checks["access"].files == ()
    assert not Pipeline([(access.CHECK, settings.checks["access"])]).acts_on(Stage.MAIL)


# --------------------------------------------------------------------------- files and config


def test_files_are_loaded_through_the_configuration(tmp_path: Path) -> None:
    one = write(tmp_path, "203.0.113.9 deny from one\n", "one")
    two = write(tmp_path, "x@sender.example allow\n", "two")
    settings = load(f"{one} , {two}")
    assert settings.checks["access"].files == (one, two)
    prepared = access.CHECK.prepare(settings.checks["access"])  # type: ignore[misc]
    assert len(prepared.table) == 2
    assert prepared.settings is settings.checks["access"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.table = accesslist.EMPTY  # type: ignore[misc]


def test_a_missing_file_is_a_warning_not_a_crash(tmp_path: Path, caplog) -> None:
    present = write(tmp_path, "203.0.113.9 deny still applies\n")
    missing = str(tmp_path / "missing")
    with caplog.at_level(logging.WARNING, logger="mxguard.access"):
        decision, _ = run_access(f"{missing}, {tmp_path}, {present}")
    assert f"access: {missing}: cannot read: No such file or directory" in caplog.text
    assert f"access: {tmp_path}: cannot read: Is a directory" in caplog.text
    assert decision is not None and decision.text == "access: still applies"


def test_broken_lines_are_logged_and_the_rest_applies(tmp_path: Path, caplog) -> None:
    path = tmp_path / "access"
    path.write_bytes(
        b"# partners\n"
        b"203.0.113.0/33 allow\n"
        b"sender.example perhaps\n"
        b"caf\xe9.example allow\n"  # Latin-1, not UTF-8
        b"203.0.113.9 deny listed\n"
    )
    with caplog.at_level(logging.WARNING, logger="mxguard.access"):
        decision, _ = run_access(str(path))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"access: {path}:2: '203.0.113.0/33': not an IP address or CIDR network",
        f"access: {path}:3: 'perhaps': unknown action; expected allow or deny",
        f"access: {path}:4: not UTF-8 text",
    ]
    assert decision is not None and decision.text == "access: listed"


def test_files_are_read_again_for_a_new_configuration(tmp_path: Path) -> None:
    # prepare runs whenever a pipeline is built: at start and on every SIGUSR1 reload.
    files = write(tmp_path, "203.0.113.9 deny first\n")
    assert run_access(files)[0].text == "access: first"
    write(tmp_path, "203.0.113.9 deny second\n")
    assert run_access(files)[0].text == "access: second"


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        pytest.param(
            "[access]\nfile = /etc/mxguard/access\n",
            "t.ini: [access] file: unknown option; did you mean 'files'?",
            id="misspelt-option",
        ),
        pytest.param(
            "[access]\nmode = strict\n",
            "t.ini: [access] mode: expected enforce or monitor (empty: the [milter] mode), "
            "got 'strict'",
            id="bad-mode",
        ),
        pytest.param(
            "[access]\nenabled = sometimes\n",
            "t.ini: [access] enabled: expected yes/no/true/false/on/off/1/0, got 'sometimes'",
            id="bad-boolean",
        ),
        pytest.param(
            "[acess]\nfiles = x\n",
            "t.ini: [acess]: unknown section; did you mean [access]?",
            id="misspelt-section",
        ),
    ],
)
def test_configuration_errors_name_file_section_and_option(ini: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.load("t.ini", text=ini)
    assert message in str(raised.value)


def test_access_runs_first_in_the_default_order() -> None:
    assert config.load("t.ini", text="").milter.order[0] == "access"
