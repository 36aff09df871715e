"""A stand-in for pymilter's per-connection context (milterContext), for driving the adapter
in-process: it answers getsymval from a dict and records replies and edits."""

from __future__ import annotations


class FakeContext:
    """The part of pymilter's milterContext the adapter uses."""

    def __init__(self, macros: dict[str, str] | None = None) -> None:
        self.macros = macros or {}
        self.replies: list[tuple] = []
        self.edits: list[tuple] = []
        self.priv = None

    def setpriv(self, priv) -> None:
        self.priv = priv

    def getpriv(self):
        return self.priv

    def getsymval(self, name: str):
        return self.macros.get(name)

    def setsymlist(self, stage: int, macros: str) -> None:
        self.edits.append(("symlist", stage, macros))

    def setreply(self, *args) -> None:
        self.replies.append(args)

    def addheader(self, name, value, idx) -> None:
        self.edits.append(("add", name, value, idx))

    def chgheader(self, name, idx, value) -> None:
        self.edits.append(("chg", name, idx, value))

    def quarantine(self, reason) -> None:
        self.edits.append(("quarantine", reason))
