"""Outbound DKIM signing: signatures that verify, and key files that stop startup."""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

import dkim
import pytest

from mxguard.checks import dkim_sign
from mxguard.core import config
from mxguard.core.dns import Found, NotFound
from mxguard.core.errors import ConfigError
from mxguard.core.facts import Connection, Facts, Message, Stage
from mxguard.mail.dkimverify import verify_message

from .fakes import services

DATA = Path(__file__).resolve().parent.parent / "data" / "dkim"
SITE = "[milter]\nlocal_domains = example.org\n"


def private(tmp_path: Path, name: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    shutil.copy(DATA / name, path)
    os.chmod(path, mode)
    return path


def load(ini: str):
    return config.load("t.ini", text=SITE + "[dkim_sign]\n" + ini).checks[dkim_sign.NAME]


FIELDS = [
    ("From", "Carol <carol@example.org>"),
    ("To", "dave@elsewhere.example"),
    ("Subject", "Signed"),
    ("Date", "Mon, 23 Nov 2026 10:00:00 +0000"),
    ("Message-ID", "<1@example.org>"),
    ("X-Mailer", "not signed"),
]


def sign(settings, author: str = "carol@example.org", **connection) -> tuple[Message, object]:
    connection.setdefault("auth_user", "carol")
    fields = [("From", author), *FIELDS[1:]]
    message = Message.from_text(fields, b"Hello Dave.\r\n")
    facts = Facts(
        Stage.EOM,
        Connection(client_ip=ipaddress.ip_address("198.51.100.7"), **connection),
        None,
        message=message,
    )
    return message, dkim_sign.check_eom(facts, dkim_sign.prepare(settings), services(SITE))


def verified(message: Message, verdict, record: str, name: str) -> list:
    (field, value) = verdict.headers[0]
    raw = [(field.encode(), (" " + value).encode()), *message.raw_headers]
    signed = Message.from_raw(raw, message.body)

    def lookup(qname: str, rdtype: str):
        return Found(((record.encode(),),), 300) if qname == name else NotFound(nxdomain=True)

    return verify_message(signed, lookup)


def test_rsa_signature_verifies_against_the_published_key(tmp_path: Path) -> None:
    key = private(tmp_path, "test.private")
    settings = load(f"domain = example.org\nselector = mail\nkey = {key}\n")
    message, verdict = sign(settings)
    assert verdict is not None and verdict.outcome == "dkim_sign.signed"
    name, value = verdict.headers[0]
    assert name == "DKIM-Signature" and "\r" not in value
    tags = dkim.util.parse_tag_value(value.encode())
    assert tags[b"a"] == b"rsa-sha256" and tags[b"c"] == b"relaxed/relaxed"
    assert [n.strip() for n in tags[b"h"].split(b":")][:2] == [b"from", b"from"]  # oversigned
    assert b"x-mailer" not in tags[b"h"]
    record = (DATA / "test.txt").read_text().strip()
    [result] = verified(message, verdict, record, "mail._domainkey.example.org")
    assert result.result == "pass"


def test_ed25519_from_a_key_table_and_subdomain_authors(tmp_path: Path) -> None:
    key = private(tmp_path, "ed25519test.key")
    table = tmp_path / "keys"
    table.write_text(f"# domain selector key\nexample.org ed {key}\n")
    settings = load(f"key_table = {table}\n")
    message, verdict = sign(settings, author="news@lists.example.org")
    assert dkim.util.parse_tag_value(verdict.headers[0][1].encode())[b"d"] == b"example.org"
    record = (DATA / "ed25519test.dns").read_text().strip()
    [result] = verified(message, verdict, record, "ed._domainkey.example.org")
    assert (result.result, result.algorithm) == ("pass", "ed25519-sha256")


def test_only_our_own_clients_and_domains_with_keys_are_signed(tmp_path: Path) -> None:
    key = private(tmp_path, "test.private")
    settings = load(f"domain = example.org\nselector = mail\nkey = {key}\n")
    assert sign(settings, auth_user="")[1] is None  # an outside client
    assert sign(settings, auth_user="", trusted=True)[1] is not None  # our relay
    assert sign(settings, author="carol@elsewhere.example")[1] is None  # no key


@pytest.mark.parametrize(
    ("mode", "content", "expected"),
    [
        (0o644, None, "can be read by others"),
        (0o600, b"-----BEGIN RSA PRIVATE KEY-----\ngarbage\n-----END RSA PRIVATE KEY-----\n",
         "is not a PEM RSA private key"),
        (0o600, b"not a key at all", "neither a PEM RSA private key nor a base64 ed25519 seed"),
    ],
)  # fmt: skip
def test_bad_key_files_stop_startup(tmp_path: Path, mode: int, content, expected: str) -> None:
    key = private(tmp_path, "test.private", mode)
    if content is not None:
        key.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        load(f"domain = example.org\nselector = mail\nkey = {key}\n")
    assert f"t.ini: [dkim_sign] key: expected a private key file: {key}" in str(error.value)
    assert expected in str(error.value)


def test_missing_key_file_and_half_configured_key(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"\[dkim_sign\] key: expected a private key file: "
        r"cannot read /nonexistent/key",
    ):
        load("domain = example.org\nselector = mail\nkey = /nonexistent/key\n")
    with pytest.raises(ConfigError, match="domain, selector and key go together"):
        load("domain = example.org\n")
