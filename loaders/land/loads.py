"""Bookkeeping shared by every loader: the lock, the `raw.loads` row, all-or-nothing transactions.

A load runs as: take the lock → check the database is initialised (`require_schema`: a load
applies no DDL) → one transaction holding the `raw.loads` row ('running' → 'succeeded') and all
the data → commit. On any failure the transaction rolls
back (nothing written) and a 'failed' row with the error is recorded in its own transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from loaders import db
from loaders.db import DatabaseSettings
from loaders.errors import RefineryError
from loaders.land import lock as load_lock
from loaders.land.ddl import require_schema
from loaders.land.reader import FileInfo, Rejection

Target = DatabaseSettings | psycopg.Connection


@dataclass
class Progress:
    """What a load has seen so far (kept for the 'failed' row when it breaks midway)."""

    files: list[FileInfo] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase, in order

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started


@dataclass(frozen=True)
class Counts:
    inserted: int = 0  # new rows
    revived: int = 0  # older contents received again after a newer one (TES reverts)
    unchanged: int = 0
    deleted: int = 0  # configurations no longer in the snapshot
    updated: int = 0  # configurations whose row changed


@dataclass(frozen=True)
class LoadResult:
    """The outcome of one successful load."""

    load_id: int
    kind: str
    files: tuple[FileInfo, ...]
    inserted: int
    revived: int
    unchanged: int
    rejected: int
    deleted: int
    seconds: float
    updated: int = 0
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(info.bytes for info in self.files)

    @property
    def records(self) -> int:
        return sum(info.records for info in self.files)

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1_000_000 / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """One line for people: what the load did."""
        if self.kind == "configurations":
            source = self.files[0].path if self.files else "?"
            return (
                f"load {self.load_id}: {self.records} configuration(s) from {source} — "
                f"{self.inserted} new, {self.updated} changed, {self.unchanged} unchanged, "
                f"{self.deleted} removed"
            )
        text = (
            f"load {self.load_id}: {len(self.files)} file(s), {self.records} record(s), "
            f"{self.bytes / 1_000_000:.1f} MB in {self.seconds:.2f} s "
            f"({self.mb_per_second:.1f} MB/s) — {self.inserted} inserted, "
            f"{self.revived} revived, {self.unchanged} unchanged, {self.rejected} rejected"
        )
        if self.rejected:
            text += " (see raw.rejected_records)"
        return text

    def summary(self) -> dict[str, object]:
        return {
            "load_id": self.load_id,
            "kind": self.kind,
            "files": len(self.files),
            "records": self.records,
            "bytes": self.bytes,
            "inserted": self.inserted,
            "updated": self.updated,
            "revived": self.revived,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "deleted": self.deleted,
            "seconds": round(self.seconds, 3),
            "phases": {name: round(value, 3) for name, value in self.phases.items()},
        }


def settings_of(conn: psycopg.Connection) -> DatabaseSettings:
    """Settings that reach the same database as `conn` (for the dedicated lock connection)."""
    info = conn.info
    return DatabaseSettings(
        host=info.host,
        port=int(info.port),
        user=info.user,
        password=info.password or None,
        dbname=info.dbname,
        source="connection",
    )


def _files_json(files: list[FileInfo]) -> str:
    return json.dumps([info.as_json() for info in files], ensure_ascii=False)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _record_failure(
    conn: psycopg.Connection | None,
    settings: DatabaseSettings,
    kind: str,
    started_at: datetime,
    progress: Progress,
    error: str,
) -> None:
    """Insert the 'failed' row in its own transaction (on a new connection if needed)."""
    own = None
    try:
        if conn is None or conn.closed or conn.broken:
            own = db.connect(settings)
            conn = own
        with conn.transaction():
            if conn.execute("select to_regclass('raw.loads')").fetchone()[0] is None:
                return
            conn.execute(
                """
                insert into raw.loads
                    (kind, status, files, rejected_count, started_at, finished_at, error)
                values (%s, 'failed', %s::jsonb, %s, %s, clock_timestamp(), %s)
                """,
                (kind, _files_json(progress.files), len(progress.rejected), started_at, error),
            )
    except (psycopg.Error, RefineryError):
        pass  # the database is gone too: the caller still reports the original error
    finally:
        if own is not None:
            own.close()


Body = Callable[[psycopg.Connection, int, Progress], Counts]


def run_load(
    target: Target,
    *,
    kind: str,
    body: Body,
    lock_timeout: float,
    held_lock: load_lock.DatabaseLock | None = None,
) -> LoadResult:
    """Run `body(conn, load_id, progress)` as one all-or-nothing load of `kind`."""
    if isinstance(target, psycopg.Connection):
        conn, settings, owned = target, settings_of(target), False
    else:
        settings = target
        conn, owned = db.connect(settings), True
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    progress = Progress()
    try:
        try:
            waited = time.perf_counter()
            with load_lock.hold(settings, lock_timeout, held=held_lock):
                progress.phases["lock"] = time.perf_counter() - waited
                with progress.phase("schema"):
                    require_schema(conn)
                with conn.transaction():
                    load_id = conn.execute(
                        "insert into raw.loads (kind, status, started_at) values (%s, 'running', %s)"
                        " returning load_id",
                        (kind, started_at),
                    ).fetchone()[0]
                    counts = body(conn, load_id, progress)
                    conn.execute(
                        """
                        update raw.loads
                        set status = 'succeeded', files = %s::jsonb, inserted_count = %s,
                            updated_count = %s, deleted_count = %s, unchanged_count = %s,
                            rejected_count = %s, finished_at = clock_timestamp()
                        where load_id = %s
                        """,
                        (
                            _files_json(progress.files),
                            counts.inserted + counts.revived,
                            counts.updated,
                            counts.deleted,
                            counts.unchanged,
                            len(progress.rejected),
                            load_id,
                        ),
                    )
                    committing = time.perf_counter()
                progress.phases["commit"] = time.perf_counter() - committing
        except RefineryError as exc:
            _record_failure(conn, settings, kind, started_at, progress, _one_line(exc))
            raise
        except psycopg.Error as exc:
            message = f"{kind} load failed, nothing was written: {_one_line(exc)}"
            _record_failure(conn, settings, kind, started_at, progress, message)
            raise RefineryError(message) from exc
        except BaseException as exc:
            _record_failure(conn, settings, kind, started_at, progress, f"interrupted: {exc!r}")
            raise
    finally:
        if owned:
            conn.close()
    return LoadResult(
        load_id=load_id,
        kind=kind,
        files=tuple(progress.files),
        inserted=counts.inserted,
        revived=counts.revived,
        unchanged=counts.unchanged,
        rejected=len(progress.rejected),
        deleted=counts.deleted,
        updated=counts.updated,
        seconds=time.perf_counter() - clock,
        phases=dict(progress.phases),
    )


def write_rejections(conn: psycopg.Connection, load_id: int, kind: str, rejections: list[Rejection]) -> None:
    """COPY rejected records with their reasons into raw.rejected_records."""
    if not rejections:
        return
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy raw.rejected_records (load_id, kind, source_file, record_index, record_key, reason, record)"
            " from stdin"
        ) as copy,
    ):
        for item in rejections:
            copy.write_row(
                (
                    load_id,
                    kind,
                    _clean(item.source_file),
                    item.index,
                    _clean(item.key),
                    _clean(item.reason),
                    _clean(item.record),
                )
            )


def _clean(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "\\u0000")
