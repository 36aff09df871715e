"""The state store: one suite, run against SQLite and a real redis-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mxguard.core.errors import StoreError
from mxguard.core.store import RedisStore, SqliteStore, Store, open_store
from tests.support.redisserver import RedisServer

from .fakes import FakeClock


@dataclass
class Backend:
    store: Store
    advance: Callable[[float], None]  # let this much time pass for the store's expiry


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path: Path, redis_server: RedisServer) -> Iterator[Backend]:
    if request.param == "sqlite":
        clock = FakeClock()
        store: Store = SqliteStore(str(tmp_path / "state.db"), clock)

        def advance(seconds: float) -> None:
            clock.now += seconds
    else:
        store = RedisStore(redis_server.url)
        store._redis.flushdb()

        def advance(seconds: float) -> None:
            time.sleep(seconds)  # Redis expires by its own clock

    yield Backend(store, advance)
    store.close()


def test_counter_counts_within_its_window(backend: Backend) -> None:
    store = backend.store
    assert [store.incr("c", 0.5) for _ in range(3)] == [1, 2, 3]
    backend.advance(0.6)
    assert store.incr("c", 0.5) == 1, "a new window starts after expiry"


def test_values_expire_and_are_replaced(backend: Backend) -> None:
    store = backend.store
    assert store.get("v") is None
    store.put("v", "one", 0.5)
    assert store.get("v") == "one"
    store.put("v", "two", 0.5)
    assert store.get("v") == "two"
    backend.advance(0.6)
    assert store.get("v") is None


def test_put_new_stores_only_when_absent_or_expired(backend: Backend) -> None:
    store = backend.store
    assert store.put_new("n", "first", 0.5) is True
    assert store.put_new("n", "second", 0.5) is False
    assert store.get("n") == "first"
    backend.advance(0.6)
    assert store.put_new("n", "third", 0.5) is True
    assert store.get("n") == "third"


def test_set_members_expire_each_on_its_own(backend: Backend) -> None:
    store = backend.store
    store.add("s", "a", 0.4)
    store.add("s", "b", 5)
    assert store.contains("s", "a") and store.contains("s", "b")
    assert not store.contains("s", "c")
    backend.advance(0.5)
    assert not store.contains("s", "a")
    assert store.contains("s", "b")


def test_delete_forgets_values_counters_and_sets(backend: Backend) -> None:
    store = backend.store
    store.put("k", "x", 10)
    store.delete("k")
    assert store.get("k") is None
    store.add("k", "m", 10)
    store.delete("k")
    assert not store.contains("k", "m")
    store.incr("k", 10)
    store.delete("k")
    assert store.incr("k", 10) == 1


def test_counters_are_atomic_across_threads(backend: Backend) -> None:
    store = backend.store

    def worker() -> None:
        for _ in range(50):
            store.incr("shared", 60)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.incr("shared", 60) == 401


def test_put_new_has_exactly_one_winner_across_threads(backend: Backend) -> None:
    store = backend.store
    wins: list[bool] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        won = store.put_new("race", str(index), 60)
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1


def test_two_redis_clients_share_one_view(redis_server: RedisServer) -> None:
    first, second = RedisStore(redis_server.url), RedisStore(redis_server.url)
    first.put("shared-key", "from the first MX", 10)
    assert second.get("shared-key") == "from the first MX"
    assert first.incr("hits", 10) == 1 and second.incr("hits", 10) == 2
    first.close()
    second.close()


def test_sqlite_prunes_expired_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SqliteStore(str(tmp_path / "state.db"), clock)
    for index in range(20):
        store.put(f"old{index}", "x", 1)
        store.add("set", f"m{index}", 1)
    clock.now += 120  # past the expiry and the sweep interval
    store.put("new", "y", 10)
    db = store._db()
    assert db.execute("SELECT COUNT(*) FROM kv").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM sets").fetchone()[0] == 0
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unreachable_redis_raises_store_error() -> None:
    store = RedisStore("redis://127.0.0.1:9/0", timeout=0.5)
    with pytest.raises(StoreError, match="redis"):
        store.incr("x", 10)


def test_unwritable_sqlite_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = SqliteStore(str(blocker / "state.db"))
    with pytest.raises(StoreError, match="sqlite"):
        store.get("x")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        pytest.param("sqlite:////var/lib/mxguard/state.db", SqliteStore, id="sqlite-absolute"),
        pytest.param("sqlite:///state.db", SqliteStore, id="sqlite-relative"),
        pytest.param("redis://127.0.0.1:6379/0", RedisStore, id="redis"),
    ],
)
def test_open_store_picks_the_backend(url: str, kind: type) -> None:
    store = open_store(url)
    assert isinstance(store, kind)
    if isinstance(store, SqliteStore):
        assert store.path == url.removeprefix("sqlite:///")


def test_sqlite_opens_safely_while_other_threads_write(tmp_path: Path) -> None:
    # Every libmilter session is a new thread; at start-up many open pool connections at once
    # while others already write. None of them may fail with "database is locked".
    errors: list[BaseException] = []

    for attempt in range(5):
        store = SqliteStore(str(tmp_path / f"fresh{attempt}.db"))
        barrier = threading.Barrier(16)

        def worker(index: int, store: SqliteStore = store, barrier=barrier) -> None:
            barrier.wait()
            try:
                store.put(f"k{index}", "v", 60)
                store.incr("shared", 60)
            except BaseException as error:  # collected: a thread's exception is lost otherwise
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.incr("shared", 60) == 17
        store.close()
    assert errors == []
