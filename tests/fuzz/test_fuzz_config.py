"""Fuzz the INI loader: for any text, load() returns Settings or raises ConfigError only."""

from __future__ import annotations

import dataclasses

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mxguard.core import config, errors

from .conftest import PROFILE
from .strategies import INTERESTING_TEXT, texts

FUZZ = settings.get_profile(PROFILE)


def _schema() -> list[tuple[str, str, str]]:
    """(section, option, default text) of every option the loader knows."""
    found = []
    for section, (cls, _doc) in config.sections().items():
        for field in dataclasses.fields(cls):
            if "default_text" in field.metadata:
                found.append((section, field.name, field.metadata["default_text"]))
    return found


SCHEMA = _schema()
SECTIONS = sorted({section for section, _, _ in SCHEMA})
# Values that reach the parsers of every value type, and the characters that broke them.
VALUES = (
    *sorted({default for _, _, default in SCHEMA}),
    "yes",
    "0",
    "-1",
    "10m",
    "1.5s",
    "example.org, bücher.example",
    "192.0.2.0/24, ::1",
    "[2001:db8::53]:5353",
    "inet:8894@127.0.0.1",
    "unix:/run/x.sock",
    "/nonexistent/mxguard-fuzz/file",
    "/nonexistent/\ud800",
    "a\x00b",
    "\udc80",
)


def check_load(text: str) -> None:
    """load(path="x.ini", text=...) gives Settings or raises ConfigError, nothing else."""
    try:
        loaded = config.load(path="x.ini", text=text)
    except errors.ConfigError:
        return
    assert isinstance(loaded, config.Settings), loaded


LINE = st.one_of(
    st.sampled_from(SECTIONS).map(lambda name: f"[{name}]"),
    st.builds(
        lambda option, value: f"{option[1]} = {value}",
        st.sampled_from(SCHEMA),
        st.one_of(st.sampled_from(VALUES), texts(VALUES), INTERESTING_TEXT),
    ),
    texts(("[milter]", "mode = monitor", "  continued", "; comment", "# comment", "x: y")),
)
INI = st.lists(LINE, max_size=12).map("\n".join)


@FUZZ
@given(st.one_of(INI, texts()))
def test_load_raises_only_config_error(text: str) -> None:
    check_load(text)


@FUZZ
@given(st.sampled_from(SCHEMA), st.one_of(st.sampled_from(VALUES), texts(VALUES)))
# Found by fuzzing: a lone surrogate in key_table escaped as UnicodeEncodeError.
@example(("dkim_sign", "key_table", ""), "/nonexistent/\ud800")
def test_every_option_rejects_bad_values_as_config_error(
    option: tuple[str, str, str], value: str
) -> None:
    section, name, _default = option
    check_load(f"[{section}]\n{name} = {value}\n")
