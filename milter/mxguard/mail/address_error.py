"""What the envelope parsers (paths, domains) return for text they refuse, and the guards on
untrusted input that they share."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_ERROR_TEXT_CHARS", "MAX_INPUT_CHARS", "AddressError", "is_control"]

# Cheap pre-check on characters (not octets) so a megabyte of input is refused before any
# per-character work. Generous because surrounding whitespace is tolerated and stripped.
MAX_INPUT_CHARS = 1024
MAX_ERROR_TEXT_CHARS = 300


@dataclass(frozen=True, slots=True)
class AddressError:
    """Why a path was refused; ``text`` is the offending input, truncated for logging."""

    text: str
    reason: str


def is_control(char: str) -> bool:
    """True for a C0 or C1 control character or DEL, which no envelope text may contain."""
    # C0, DEL and the C1 block: none is allowed by RFC 5321, and RFC 6531 gains nothing from
    # C1 controls except a way to corrupt logs and terminals.
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F
