"""Configuration generations: a reload swaps the runtime, connections keep theirs, and what an
old generation holds is closed only after its last connection; in-flight transactions; the
options a reload cannot change."""

from __future__ import annotations

import dataclasses
import threading
import time

from mxguard.core import config
from mxguard.daemon.inflight import InFlight
from mxguard.daemon.runtime import RuntimeHolder, build_runtime
from mxguard.daemon.server import keep_restart_options


class Closable:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def load(text: str = "") -> config.Settings:
    return config.load("test.ini", text="[state]\nurl = sqlite:///:memory:\n" + text)


def generation(settings: config.Settings, resolver: Closable, store: Closable):
    runtime = build_runtime(settings)
    runtime.resolver.close(wait=True)
    return dataclasses.replace(runtime, resolver=resolver, store=store)


def test_a_replaced_generation_is_closed_after_its_last_connection() -> None:
    old_resolver, old_store = Closable(), Closable()
    holder = RuntimeHolder(generation(load(), old_resolver, old_store))
    first, second = holder.acquire(), holder.acquire()
    holder.replace(generation(load(), Closable(), Closable()))
    assert holder.generations() == 2
    holder.release(first)
    assert (old_resolver.closed, old_store.closed) == (0, 0)  # the second still uses them
    holder.release(second)
    assert (old_resolver.closed, old_store.closed) == (1, 1)
    assert holder.generations() == 1


def test_a_resolver_kept_by_the_next_generation_is_not_closed() -> None:
    shared, old_store = Closable(), Closable()
    holder = RuntimeHolder(generation(load(), shared, old_store))
    holder.replace(generation(load(), shared, Closable()))  # [dns] unchanged
    assert shared.closed == 0 and old_store.closed == 1
    holder.close()
    assert shared.closed == 1


def test_an_unused_generation_is_closed_when_replaced() -> None:
    resolver, store = Closable(), Closable()
    holder = RuntimeHolder(generation(load(), resolver, store))
    holder.release(holder.acquire())
    holder.replace(generation(load(), Closable(), Closable()))
    assert (resolver.closed, store.closed) == (1, 1)


def test_build_runtime_keeps_the_resolver_and_store_when_their_sections_are_unchanged() -> None:
    first = build_runtime(load())
    same = build_runtime(load("[milter]\nmode = monitor\n"), first)
    other = build_runtime(load("[dns]\ntimeout = 1s\n"), first)
    assert same.resolver is first.resolver and same.store is first.store
    assert other.resolver is not first.resolver and other.store is first.store
    for runtime in (first, other):
        runtime.resolver.close(wait=True)


def test_draining_waits_for_the_transactions_in_flight_and_refuses_new_ones() -> None:
    in_flight = InFlight()
    assert in_flight.begin()
    threading.Timer(0.2, in_flight.end).start()
    started = time.monotonic()
    assert in_flight.drain(5.0) == 0
    assert 0.15 < time.monotonic() - started < 5.0
    assert not in_flight.begin()


def test_draining_gives_up_after_the_timeout() -> None:
    in_flight = InFlight()
    in_flight.begin()
    assert in_flight.drain(0.05) == 1


def test_a_reload_keeps_what_needs_a_restart() -> None:
    running = load("[milter]\nsocket = unix:/run/a.sock\n[metrics]\nport = 9100\n")
    new = load(
        "[milter]\nsocket = unix:/run/b.sock\nuser = other\nmode = monitor\n"
        "[metrics]\nport = 9200\n"
    )
    kept = keep_restart_options(new, running)
    assert kept.milter.socket == "unix:/run/a.sock" and kept.milter.user == "mxguard"
    assert kept.metrics.port == 9100
    assert str(kept.milter.mode) == "monitor"  # a reload does change this


def test_a_refused_generation_closes_only_what_it_made() -> None:
    shared, own_store = Closable(), Closable()
    holder = RuntimeHolder(generation(load(), shared, Closable()))
    holder.discard(generation(load(), shared, own_store))  # [dns] unchanged, [state] changed
    assert shared.closed == 0 and own_store.closed == 1
