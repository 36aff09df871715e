"""Everything one configuration needs at run time, built once and swapped whole on reload."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mxguard.core.check import Services
from mxguard.core.config import Settings
from mxguard.core.dns import ConnectionLookups, Resolver
from mxguard.core.facts import IPAddress
from mxguard.core.notices import Notices
from mxguard.core.pipeline import Pipeline
from mxguard.core.store import open_store
from mxguard.daemon.inflight import InFlight

log = logging.getLogger("mxguard")


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
        return self.settings.milter.trusts(ip)

    def resources(self) -> tuple[Any, ...]:
        """What must be closed once no connection uses this generation any more."""
        return (self.resolver, self.store)


def build_runtime(settings: Settings, previous: Runtime | None = None) -> Runtime:
    """A runtime for ``settings``; keeps ``previous``'s resolver (and its warm cache) when the
    [dns] settings are the same, and its store when [state] is."""
    if previous is not None and previous.settings.dns == settings.dns:
        resolver = previous.resolver
    else:
        resolver = Resolver(
            nameservers=settings.dns.nameservers,
            timeout=settings.dns.timeout,
            cache_size=settings.dns.cache_size,
        )
    same_state = previous is not None and previous.settings.state == settings.state
    return Runtime(
        settings=settings,
        pipeline=Pipeline(settings.ordered_checks(), source=settings.path),
        resolver=resolver,
        notices=Notices(time.time),
        store=previous.store if same_state else open_store(settings.state.url),
    )


class RuntimeHolder:
    """The current runtime, and the older ones that open connections still use.

    A connection takes its runtime once, at its start, so a reload never changes the rules in
    the middle of a conversation; the resolver and store of a replaced runtime are closed
    only when the last connection that uses them has ended."""

    def __init__(self, runtime: Runtime) -> None:
        self._lock = threading.Lock()
        self._current = runtime
        self._users: dict[int, tuple[Runtime, int]] = {id(runtime): (runtime, 0)}
        self.in_flight = InFlight()

    @property
    def current(self) -> Runtime:
        """The runtime new connections use."""
        return self._current

    def acquire(self) -> Runtime:
        """The current runtime, counted as used by one more connection until :meth:`release`."""
        with self._lock:
            runtime = self._current
            _, users = self._users[id(runtime)]
            self._users[id(runtime)] = (runtime, users + 1)
        return runtime

    def release(self, runtime: Runtime) -> None:
        """One connection that used ``runtime`` has ended."""
        with self._lock:
            entry = self._users.get(id(runtime))
            if entry is None or entry[0] is not runtime:
                return  # not acquired here (a test's own instance)
            self._users[id(runtime)] = (runtime, max(0, entry[1] - 1))
            unused = self._collect()
        _close(unused)

    def replace(self, runtime: Runtime) -> Runtime:
        """Make ``runtime`` current and return the previous one."""
        with self._lock:
            previous, self._current = self._current, runtime
            self._users.setdefault(id(runtime), (runtime, 0))
            unused = self._collect()
        _close(unused)
        return previous

    def discard(self, runtime: Runtime) -> None:
        """Close what ``runtime`` (built, then refused) holds that no live runtime shares."""
        with self._lock:
            alive = self._resources_in_use()
        _close([r for r in runtime.resources() if r is not None and id(r) not in alive])

    def close(self) -> None:
        """At exit: close every resource, whoever still uses it."""
        with self._lock:
            runtimes = [runtime for runtime, _ in self._users.values()]
            self._users.clear()
        _close([resource for runtime in runtimes for resource in runtime.resources()])

    def generations(self) -> int:
        """How many runtimes are alive: the current one and those connections still use."""
        with self._lock:
            return len(self._users)

    def _collect(self) -> list[Any]:
        """Forget the runtimes nobody uses; return their resources that no live runtime
        shares (the lock is held)."""
        retired = [
            key
            for key, (runtime, users) in self._users.items()
            if users == 0 and runtime is not self._current
        ]
        dead = [self._users.pop(key)[0] for key in retired]
        alive = self._resources_in_use()
        unused: dict[int, Any] = {}
        for runtime in dead:
            for resource in runtime.resources():
                if resource is not None and id(resource) not in alive:
                    unused[id(resource)] = resource
        return list(unused.values())

    def _resources_in_use(self) -> set[int]:
        """The ids of what the live runtimes hold (the lock is held)."""
        return {id(r) for runtime, _ in self._users.values() for r in runtime.resources()}


def _close(resources: list[Any]) -> None:
    for resource in resources:
        try:
            resource.close()
        except Exception:
            log.exception("closing %s failed", type(resource).__name__)
