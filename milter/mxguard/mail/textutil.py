"""Make client-supplied text safe for replies, logs and header fields."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]|[\ud800-\udfff]")


def printable(text: str, limit: int = 200) -> str:
    """``text`` without control characters or undecodable bytes, cut to ``limit`` characters."""
    cleaned = _UNSAFE.sub("?", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."
