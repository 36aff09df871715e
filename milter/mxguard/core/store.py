"""State that outlives a connection: counters, values and sets, each with an expiry.

Two backends behind one interface, chosen by ``[state] url``:

* ``sqlite:///path`` (the default): an embedded database in WAL mode, a pool of connections
  shared by libmilter's threads, expired rows pruned as it goes;
* ``redis://host:port/db``: several MX hosts share one view.

Expiry here is retention only: a check that needs to know *when* something happened stores
the time (from its injected clock) in the value. Every operation that must be atomic under
concurrency is a single statement (SQLite) or a single command or MULTI (Redis). A failing
backend raises StoreError; the checks catch it and fail open with a warning.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from mxguard.core import metrics
from mxguard.core.errors import StoreError

PRUNE_EVERY = 60.0  # seconds between sweeps of expired rows (SQLite)


class Store(Protocol):
    """What the checks may keep between connections."""

    def incr(self, key: str, window: float) -> int:
        """Add one to a counter that lives ``window`` seconds from its first increment."""
        ...

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None (absent or expired)."""
        ...

    def put(self, key: str, value: str, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing any value."""
        ...

    def put_new(self, key: str, value: str, ttl: float) -> bool:
        """Store ``value`` only if ``key`` holds nothing live; True when it was stored."""
        ...

    def add(self, key: str, member: str, ttl: float) -> None:
        """Put ``member`` into the set ``key`` for ``ttl`` seconds."""
        ...

    def contains(self, key: str, member: str) -> bool:
        """True when ``member`` is in the set ``key`` and has not expired."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key`` (value, counter or whole set)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sets (
    key TEXT NOT NULL, member TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (key, member)
);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires);
CREATE INDEX IF NOT EXISTS sets_expires ON sets (expires);
"""


class SqliteStore:
    """The embedded backend: one WAL database, connections pooled across threads.

    libmilter starts a thread per SMTP connection, so a connection per thread would mean
    opening the database for every session; a pool hands each operation an idle connection."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._initialised = False
        self._next_prune = 0.0

    def _open(self) -> sqlite3.Connection:
        # Opening is serialised, and only the first connection sets up the file: switching the
        # journal mode needs the database to itself, and fails ("database is locked") while
        # other connections are writing. WAL is a property of the file, so once is enough.
        with self._lock:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                # Autocommit: every statement below is atomic on its own. A connection is used
                # by one thread at a time (taken from and given back to the pool).
                db = sqlite3.connect(
                    self.path, timeout=5.0, isolation_level=None, check_same_thread=False
                )
                if not self._initialised:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(_SCHEMA)
                    self._initialised = True
                db.execute("PRAGMA synchronous=NORMAL")
            except (sqlite3.Error, OSError) as error:
                metrics.STORE_ERRORS.inc()
                raise StoreError(f"sqlite {self.path}: {error}") from error
            return db

    def _db(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._open()

    def _run(self, sql: str, parameters: tuple) -> list[tuple]:
        now = self._clock()
        db = self._db()
        try:
            if now >= self._next_prune:
                self._prune(db, now)
            cursor = db.execute(sql, parameters)
            rows = cursor.fetchall()
            return rows
        except sqlite3.Error as error:
            metrics.STORE_ERRORS.inc()
            raise StoreError(f"sqlite {self.path}: {error}") from error
        finally:
            self._idle.put(db)

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        with self._lock:
            if now < self._next_prune:
                return
            self._next_prune = now + PRUNE_EVERY
        db.execute("DELETE FROM kv WHERE expires <= ?", (now,))
        db.execute("DELETE FROM sets WHERE expires <= ?", (now,))

    def incr(self, key: str, window: float) -> int:
        """Add one to a counter that lives ``window`` seconds from its first increment."""
        now = self._clock()
        rows = self._run(
            "INSERT INTO kv (key, value, expires) VALUES (?, '1', ?) "
            "ON CONFLICT (key) DO UPDATE SET "
            "value = CASE WHEN kv.expires <= ? THEN '1' ELSE CAST(kv.value AS INTEGER) + 1 END, "
            "expires = CASE WHEN kv.expires <= ? THEN excluded.expires ELSE kv.expires END "
            "RETURNING value",
            (key, now + window, now, now),
        )
        return int(rows[0][0])

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None (absent or expired)."""
        rows = self._run("SELECT value FROM kv WHERE key = ? AND expires > ?", (key, self._clock()))
        return str(rows[0][0]) if rows else None

    def put(self, key: str, value: str, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing any value."""
        self._run(
            "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, expires = excluded.expires",
            (key, value, self._clock() + ttl),
        )

    def put_new(self, key: str, value: str, ttl: float) -> bool:
        """Store ``value`` only if ``key`` holds nothing live; True when it was stored."""
        now = self._clock()
        rows = self._run(
            "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, expires = excluded.expires WHERE kv.expires <= ? "
            "RETURNING 1",
            (key, value, now + ttl, now),
        )
        return bool(rows)

    def add(self, key: str, member: str, ttl: float) -> None:
        """Put ``member`` into the set ``key`` for ``ttl`` seconds."""
        self._run(
            "INSERT INTO sets (key, member, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (key, member) DO UPDATE SET expires = excluded.expires",
            (key, member, self._clock() + ttl),
        )

    def contains(self, key: str, member: str) -> bool:
        """True when ``member`` is in the set ``key`` and has not expired."""
        rows = self._run(
            "SELECT 1 FROM sets WHERE key = ? AND member = ? AND expires > ?",
            (key, member, self._clock()),
        )
        return bool(rows)

    def delete(self, key: str) -> None:
        """Forget ``key`` (value, counter or whole set)."""
        self._run("DELETE FROM kv WHERE key = ?", (key,))
        self._run("DELETE FROM sets WHERE key = ?", (key,))

    def close(self) -> None:
        """Close the idle connections."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class RedisStore:
    """The shared backend: every MX host that points here sees the same state."""

    PREFIX = "mxguard:"

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        import redis

        self.url = url
        self._errors = (redis.RedisError, OSError)
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )

    def _call(self, action: Callable[[], object]) -> object:
        try:
            return action()
        except self._errors as error:
            metrics.STORE_ERRORS.inc()
            raise StoreError(f"redis {self.url}: {error}") from error

    def incr(self, key: str, window: float) -> int:
        """Add one to a counter that lives ``window`` seconds from its first increment."""
        name = self.PREFIX + key

        def increment() -> object:
            with self._redis.pipeline(transaction=True) as multi:
                multi.set(name, 0, px=_millis(window), nx=True)
                multi.incr(name)
                return multi.execute()[1]

        return int(self._call(increment))  # type: ignore[arg-type]

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None (absent or expired)."""
        value = self._call(lambda: self._redis.get(self.PREFIX + key))
        return None if value is None else str(value)

    def put(self, key: str, value: str, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing any value."""
        self._call(lambda: self._redis.set(self.PREFIX + key, value, px=_millis(ttl)))

    def put_new(self, key: str, value: str, ttl: float) -> bool:
        """Store ``value`` only if ``key`` holds nothing live; True when it was stored."""
        stored = self._call(
            lambda: self._redis.set(self.PREFIX + key, value, px=_millis(ttl), nx=True)
        )
        return bool(stored)

    def add(self, key: str, member: str, ttl: float) -> None:
        """Put ``member`` into the set ``key`` for ``ttl`` seconds."""
        name = self.PREFIX + key
        expires = time.time() + ttl

        def add_member() -> object:
            with self._redis.pipeline(transaction=True) as multi:
                multi.zadd(name, {member: expires})
                multi.zremrangebyscore(name, "-inf", time.time())  # members past their expiry
                multi.expire(name, int(ttl) + 1, gt=True)
                multi.expire(name, int(ttl) + 1, nx=True)
                return multi.execute()

        self._call(add_member)

    def contains(self, key: str, member: str) -> bool:
        """True when ``member`` is in the set ``key`` and has not expired."""
        score = self._call(lambda: self._redis.zscore(self.PREFIX + key, member))
        return score is not None and float(score) > time.time()  # type: ignore[arg-type]

    def delete(self, key: str) -> None:
        """Forget ``key`` (value, counter or whole set)."""
        self._call(lambda: self._redis.delete(self.PREFIX + key))

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


def _millis(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def open_store(url: str, clock: Callable[[], float] = time.time) -> Store:
    """The backend for a ``[state] url``; connections open on first use."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///") :], clock)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise StoreError(f"unsupported state url {url!r}")
