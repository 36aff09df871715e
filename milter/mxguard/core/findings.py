"""Findings: what one check learned that another check needs, as typed, declared data.

A check declares the kinds of finding it ``provides`` and the kinds it ``needs``; the pipeline
keeps them in one ``Findings`` per transaction and orders the checks by these declarations.
In a ``Findings`` each kind is in one of three states:

* known: an instance of the kind (SPF said fail; two signatures, one passing);
* absent: no check provided it (the providing check is off, skipped this client, or had
  nothing to say);
* could not tell: a ``CouldNotTell`` (the providing check raised, or the DNS behind the whole
  finding failed).

A check that needs a kind must tell the last two apart: an absent pass may be a fail, a pass
that could not be told is not. Verdicts go to the MTA and into Authentication-Results; checks
never read them back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from mxguard.core.facts import Connection


class Finding:
    """Base of the finding kinds; each is a frozen dataclass below."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class CouldNotTell:
    """A finding that its check could not establish, and why (for the reply and the log)."""

    kind: type[Finding]
    reason: str
    dns: bool = False  # the DNS failed (reply 4.4.3), rather than the check (4.3.0)


F = TypeVar("F", bound=Finding)
Item = Finding | CouldNotTell


class Findings:
    """The findings of a transaction so far, one per kind (a later one replaces an earlier)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Item] = ()) -> None:
        self._items: dict[type[Finding], Item] = {}
        for item in items:
            self._items[_kind(item)] = item

    def get(self, kind: type[F]) -> F | CouldNotTell | None:
        """The finding of ``kind``: an instance, CouldNotTell, or None when absent."""
        return self._items.get(kind)  # type: ignore[return-value]

    def known(self, kind: type[F]) -> F | None:
        """The finding of ``kind`` when it is known, else None (absent or could not tell)."""
        item = self._items.get(kind)
        return None if isinstance(item, CouldNotTell) else item  # type: ignore[return-value]

    def unknown(self, kind: type[Finding]) -> CouldNotTell | None:
        """The CouldNotTell for ``kind``, when that is its state."""
        item = self._items.get(kind)
        return item if isinstance(item, CouldNotTell) else None

    def plus(self, items: Iterable[Item]) -> Findings:
        """These findings with ``items`` added (replacing the same kinds)."""
        added = tuple(items)
        if not added:
            return self
        merged = Findings()
        merged._items = {**self._items, **{_kind(item): item for item in added}}
        return merged

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Findings({list(self._items.values())!r})"


NONE = Findings()


def _kind(item: Item) -> type[Finding]:
    return item.kind if isinstance(item, CouldNotTell) else type(item)


# -- the kinds ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpfIdentity:
    """The SPF result for one identity: its domain and result (pass, fail, temperror ...)."""

    domain: str
    result: str


@dataclass(frozen=True, slots=True)
class SpfResults(Finding):
    """What the spf check found for the MAIL FROM and the HELO identity (None: not evaluated)."""

    mailfrom: SpfIdentity | None = None
    helo: SpfIdentity | None = None


@dataclass(frozen=True, slots=True)
class DkimSignature:
    """One verified DKIM signature: its d= domain (lower-case) and result."""

    domain: str
    result: str


@dataclass(frozen=True, slots=True)
class DkimSignatures(Finding):
    """Every signature the dkim check verified, in message order (empty: none)."""

    signatures: tuple[DkimSignature, ...] = ()

    def passing(self) -> list[str]:
        """The d= domains of the signatures that passed."""
        return [s.domain for s in self.signatures if s.result == "pass"]

    def untold(self) -> list[str]:
        """The d= domains whose signatures could not be checked now (temperror)."""
        return [s.domain for s in self.signatures if s.result == "temperror"]


@dataclass(frozen=True, slots=True)
class TrustedSealer(Finding):
    """An ARC sealer in [arc] trusted_sealers vouched for the message's earlier results."""

    domain: str


@dataclass(frozen=True, slots=True)
class ListingWeight(Finding):
    """A dnsbl listing of the client below the dnsbl threshold, for rhsbl to add to its own."""

    weight: int
    evidence: str  # "192.0.2.1 listed by zone.example"


@dataclass(frozen=True, slots=True)
class Allowed(Finding):
    """An access-list allow entry matched: the checks that honour it skip this transaction."""

    reason: str


@dataclass(frozen=True, slots=True)
class UnknownRecipient(Finding):
    """The recipient being decided was refused as unknown (the harvest check counts these)."""

    address: str


@dataclass(frozen=True, slots=True)
class OutsideClient(Finding):
    """Behind our trusted relay, the outside client its Received field names."""

    connection: Connection
