"""What crosses the pipe to a client process and back: its options and its figures."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DriveResult:
    """What one client process saw."""

    ok: int = 0  # transactions that succeeded inside the window
    late: int = 0  # transactions that succeeded after it (finishing in-flight work)
    latencies: list[float] = field(default_factory=list)  # seconds, of the ``ok`` ones
    errors: Counter[str] = field(default_factory=Counter)
    refusals: list[str] = field(default_factory=list)  # texts of the expected 550 replies
    header_edits: Counter[str] = field(default_factory=Counter)  # added fields, by name
    round_trips: float = 0.0
    window: float = 0.0  # seconds the measured window lasted
    wall: float = 0.0  # seconds the process worked (window plus draining)
    cpu: float = 0.0  # CPU seconds (user + system) the process used meanwhile


@dataclass(frozen=True)
class ClientOptions:
    """How the client behaves towards the milter."""

    per_connection: int = 1  # transactions per milter connection
    reply_timeout: float = 10.0  # seconds to wait for a reply before counting an error
    quickack: bool = False  # ACK every TCP read at once (diagnostic; Postfix does not)
