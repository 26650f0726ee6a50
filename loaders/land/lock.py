"""One loader at a time per database: a session-level PostgreSQL advisory lock.

`refinery load tes`, `refinery load configurations` and `refinery sync` share one lock key. The
lock is taken with `pg_try_advisory_lock` on a dedicated autocommit connection, polled until a
timeout, and released when the context exits (or, if the process dies, when PostgreSQL closes the
session). `sync` holds the lock across all its steps and hands the held lock to the loaders it
calls, which then do not try to take it again (`DatabaseLock.hold(..., held=lock)`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import psycopg

from loaders import db
from loaders.db import DatabaseSettings
from loaders.errors import LockBusyError

LOAD_LOCK_KEY = 7_342_002  # bigint key shared by every loader and sync
POLL_SECONDS = 0.2


@dataclass
class DatabaseLock:
    """A held advisory lock; `conn` is the session that holds it."""

    conn: psycopg.Connection
    key: int = LOAD_LOCK_KEY

    @property
    def alive(self) -> bool:
        return not self.conn.closed


def _holder(conn: psycopg.Connection, key: int) -> str:
    """Who holds the lock, for the error message (best effort)."""
    row = conn.execute(
        """
        select lck.pid, act.application_name, act.backend_start
        from pg_locks as lck
        left join pg_stat_activity as act on act.pid = lck.pid
        where lck.locktype = 'advisory' and lck.granted
            and lck.classid = %(hi)s and lck.objid = %(lo)s and lck.objsubid = 1
            and lck.database = (select oid from pg_database where datname = current_database())
        limit 1
        """,
        {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
    ).fetchone()
    if row is None:
        return ""
    pid, application, since = row
    client = application or "unknown client"
    return f" (held by backend pid {pid}, {client}, connected {since:%Y-%m-%d %H:%M:%S%z})"


def acquire(conn: psycopg.Connection, timeout: float, *, key: int = LOAD_LOCK_KEY) -> None:
    """Take the session lock on `conn` (autocommit), polling until `timeout` seconds passed."""
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        got = conn.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()
        if got and got[0]:
            return
        if time.monotonic() >= deadline:
            raise LockBusyError(
                f"another load is running on database {conn.info.dbname!r}{_holder(conn, key)}; "
                f"gave up after waiting {timeout:g} s (raise --lock-timeout to wait longer)"
            )
        time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.01)))


def release(conn: psycopg.Connection, *, key: int = LOAD_LOCK_KEY) -> None:
    if not conn.closed:
        conn.execute("select pg_advisory_unlock(%s)", (key,))


@contextmanager
def hold(
    settings: DatabaseSettings,
    timeout: float,
    *,
    held: DatabaseLock | None = None,
    key: int = LOAD_LOCK_KEY,
) -> Iterator[DatabaseLock]:
    """Hold the load lock for the block; re-entrant when the caller passes the lock it holds."""
    if held is not None and held.alive and held.key == key:
        yield held
        return
    conn = db.connect(settings, autocommit=True)
    try:
        acquire(conn, timeout, key=key)
        try:
            yield DatabaseLock(conn, key)
        finally:
            # if this fails, closing the session below releases the lock anyway
            with suppress(psycopg.Error):
                release(conn, key=key)
    finally:
        conn.close()
