"""Everything one configuration needs at run time, built once and swapped whole on reload."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .check import Services
from .config import Settings
from .dns import ConnectionLookups, Resolver
from .facts import IPAddress
from .notices import Notices
from .pipeline import Pipeline
from .store import open_store


@dataclass(frozen=True, slots=True)
class Runtime:
    """Settings, checks, resolver, clock and store of one configuration generation."""

    settings: Settings
    pipeline: Pipeline
    resolver: Resolver
    notices: Notices
    clock: Callable[[], float] = time.time
    store: Any = None

    def services(self) -> Services:
        """Fresh services for one connection: answers asked for at one stage (say, at connect)
        are reused at the later ones, and a DNS failure is waited for only once."""
        return Services(
            site=self.settings.milter,
            dns=ConnectionLookups(self.resolver),
            clock=self.clock,
            notices=self.notices,
            store=self.store,
        )

    def is_trusted(self, ip: IPAddress | None) -> bool:
        """True when ``ip`` is in [milter] trusted_networks."""
        return ip is not None and any(
            ip in network for network in self.settings.milter.trusted_networks
        )


def build_runtime(settings: Settings, resolver: Resolver | None = None) -> Runtime:
    """A runtime for ``settings``; reuses ``resolver`` (and its warm cache) when given."""
    if resolver is None:
        resolver = Resolver(
            nameservers=settings.dns.nameservers,
            timeout=settings.dns.timeout,
            cache_size=settings.dns.cache_size,
        )
    return Runtime(
        settings=settings,
        pipeline=Pipeline(settings.ordered_checks()),
        resolver=resolver,
        notices=Notices(time.time),
        store=open_store(settings.state.url),
    )


class RuntimeHolder:
    """The current runtime. A connection takes it once at its start, so a reload never changes
    the rules in the middle of a conversation."""

    def __init__(self, runtime: Runtime) -> None:
        self._lock = threading.Lock()
        self._current = runtime

    @property
    def current(self) -> Runtime:
        """The runtime new connections use."""
        return self._current

    def replace(self, runtime: Runtime) -> Runtime:
        """Make ``runtime`` current and return the previous one."""
        with self._lock:
            previous, self._current = self._current, runtime
        return previous
