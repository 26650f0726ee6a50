"""`refinery load tes`: land TES ValueSet files in `raw.tes_valuesets`, all or nothing.

Files are read one at a time, each record parsed when its turn comes (`loaders.land.reader`);
every record is validated and hashed from the parsed dict. Under the load lock the set of contents
already stored is known, so the loader decides per record while streaming: a content not stored
yet is COPYed (psycopg's binary COPY) straight into `raw.tes_valuesets` (the server parses its
jsonb while this process reads on); the keys of
contents stored by earlier loads go to a small temporary table, from which set-based SQL decides
the rest per (canonical_url, version): same content as the current row → unchanged; a content
seen before but superseded since (a revert) → its `last_seen_load_id` moves to this load. It all
happens in the load's one transaction (`loads.run_load`), so a failure anywhere leaves nothing
behind. See `schema.sql` for the contract with dbt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.types.json import set_json_dumps

from loaders.errors import InvalidInputError
from loaders.land import lock as load_lock
from loaders.land.loads import Counts, LoadResult, Progress, Target, run_load, write_rejections
from loaders.land.reader import (
    FileRejected,
    Rejection,
    TesFile,
    ValueSetRow,
    expand_paths,
)

KIND = "tes"

# Every content already stored (read under the lock, so it cannot change during the load).
KNOWN_CONTENTS = "select canonical_url, version, resource_sha256 from raw.tes_valuesets"

# Binary COPY: the server skips the text format's per-byte line/escape scan of ~all the data.
COPY_NEW = (
    "copy raw.tes_valuesets (canonical_url, version, resource, resource_sha256, source_file,"
    " load_id, last_seen_load_id, loaded_at) from stdin (format binary)"
)
COPY_TYPES = ["text", "text", "jsonb", "text", "text", "int8", "int8", "timestamptz"]


def _serialised(data: bytes) -> bytes:
    """The jsonb column receives the record's canonical JSON, already serialised (and hashed)."""
    return data


CREATE_KEYS = """
create temporary table tes_incoming (
    canonical_url text not null,
    version text not null,
    resource_sha256 text not null
) on commit drop
"""

# One action per distinct content received. Contents inserted by this load are 'insert' (the
# loader counts those itself and sends only the other keys, so here that count is 0); for the
# others (conflicting keys are never here, so no row of this load shares their url|version):
# the current row ('unchanged') or an older one ('revert').
CLASSIFY = """
with incoming as (
    select distinct canonical_url, version, resource_sha256
    from pg_temp.tes_incoming
),

matched as (
    select stored.canonical_url, stored.version, stored.valueset_id, stored.load_id
    from incoming
    inner join raw.tes_valuesets as stored
        on incoming.canonical_url = stored.canonical_url
        and incoming.version = stored.version
        and incoming.resource_sha256 = stored.resource_sha256
),

current_rows as (
    select distinct on (stored.canonical_url, stored.version)
        stored.canonical_url, stored.version, stored.valueset_id
    from raw.tes_valuesets as stored
    inner join incoming
        on stored.canonical_url = incoming.canonical_url and stored.version = incoming.version
    where stored.load_id <> %(load_id)s
    order by stored.canonical_url, stored.version, stored.last_seen_load_id desc,
        stored.valueset_id desc
),

actions as (
    select
        matched.valueset_id,
        case
            when matched.load_id = %(load_id)s then 'insert'
            when matched.valueset_id = current_rows.valueset_id then 'unchanged'
            else 'revert'
        end as action
    from matched
    left join current_rows
        on matched.canonical_url = current_rows.canonical_url
        and matched.version = current_rows.version
),

revived as (
    update raw.tes_valuesets as stored
    set last_seen_load_id = %(load_id)s
    from actions
    where actions.action = 'revert' and stored.valueset_id = actions.valueset_id
    returning stored.valueset_id
)

select
    (select count(*) from actions where action = 'insert') as inserted,
    (select count(*) from revived) as revived,
    (select count(*) from actions where action = 'unchanged') as unchanged
"""

DELETE_CONFLICTING = """
delete from raw.tes_valuesets as stored
using unnest(%(urls)s::text [], %(versions)s::text []) as conflict (canonical_url, version)
where stored.load_id = %(load_id)s
    and stored.canonical_url = conflict.canonical_url
    and stored.version = conflict.version
"""


@dataclass
class _Seen:
    """Where a (url, version) first appeared in this load, and with which content."""

    sha256: str
    source: str
    index: int


@dataclass
class _Stream:
    """What streaming found: record keys, contents sent, and (url, version) keys in conflict."""

    keys: list[tuple[str, str, str, str, int]] = field(default_factory=list)  # url, version, sha, file, index
    sent: set[tuple[str, str, str]] = field(default_factory=set)  # contents COPYed: url, version, sha
    conflicts: dict[tuple[str, str], _Seen] = field(default_factory=dict)


def _conflict(row: ValueSetRow, source: str, first: _Seen) -> Rejection:
    return Rejection(
        source,
        row.index,
        f"{row.canonical_url}|{row.version}",
        f"a different content for the same url|version is in {first.source} record {first.index}; "
        "one load may hold only one content per url|version",
    )


def _stream(
    conn: psycopg.Connection,
    load_id: int,
    files: list[Path],
    skip_invalid: bool,
    progress: Progress,
) -> _Stream:
    """Read every file once; COPY contents not stored yet into raw.tes_valuesets."""
    known = {tuple(row) for row in conn.execute(KNOWN_CONTENTS)}
    loaded_at: datetime = conn.execute("select now()").fetchone()[0]
    found = _Stream()
    first: dict[tuple[str, str], _Seen] = {}
    with conn.cursor() as cur:
        set_json_dumps(_serialised, context=cur)
        with cur.copy(COPY_NEW) as copy:
            copy.set_types(COPY_TYPES)
            for path in files:
                try:
                    document = TesFile(path)
                except FileRejected as exc:
                    if not skip_invalid:
                        raise exc.rejection.error() from exc
                    progress.rejected.append(exc.rejection)
                    continue
                source = document.source
                try:
                    # --skip-invalid refuses a file as a whole when any of it is unreadable: read
                    # it all first; otherwise any problem stops the load, so rows stream as they come
                    items = list(document.items()) if skip_invalid else document.items()
                    for item in items:
                        if not isinstance(item, ValueSetRow):
                            if not skip_invalid:
                                raise document.refusal(item).error()
                            progress.rejected.append(item)
                            continue
                        key = (item.canonical_url, item.version)
                        seen = first.get(key)
                        if seen is None:
                            first[key] = _Seen(item.sha256, source, item.index)
                        elif seen.sha256 != item.sha256:
                            if not skip_invalid:
                                raise document.refusal(_conflict(item, source, seen)).error()
                            found.conflicts[key] = seen
                        found.keys.append((item.canonical_url, item.version, item.sha256, source, item.index))
                        content = (item.canonical_url, item.version, item.sha256)
                        if content in known:
                            continue
                        known.add(content)  # the same content twice in one load is sent once
                        found.sent.add(content)
                        copy.write_row(
                            (
                                item.canonical_url,
                                item.version,
                                item.data,
                                item.sha256,
                                source,
                                load_id,
                                load_id,
                                loaded_at,
                            )
                        )
                except FileRejected as exc:  # found past the file's syntax (see TesFile)
                    if not skip_invalid:
                        raise exc.rejection.error() from exc
                    progress.rejected.append(exc.rejection)
                    continue
                progress.files.append(document.info)
    return found


def _reject_conflicts(
    conn: psycopg.Connection, load_id: int, found: _Stream, progress: Progress
) -> list[tuple[str, str, str]]:
    """--skip-invalid: reject every record of a conflicting url|version and undo its insert."""
    if not found.conflicts:
        return [(url, version, sha) for url, version, sha, _, _ in found.keys]
    keep: list[tuple[str, str, str]] = []
    for url, version, sha, source, index in found.keys:
        if (url, version) in found.conflicts:
            progress.rejected.append(
                Rejection(
                    source,
                    index,
                    f"{url}|{version}",
                    "another content for the same url|version is in this load",
                )
            )
        else:
            keep.append((url, version, sha))
    urls, versions = zip(*found.conflicts, strict=True)
    conn.execute(DELETE_CONFLICTING, {"urls": list(urls), "versions": list(versions), "load_id": load_id})
    return keep


def _tune_session(conn: psycopg.Connection) -> None:
    """lz4 TOAST compression for the new rows, several times faster than the default pglz.

    Transaction-local; skipped when the server lacks it (PostgreSQL < 14 or built without lz4).
    """
    try:
        with conn.transaction():
            conn.execute("select set_config('default_toast_compression', 'lz4', true)")
    except psycopg.Error:
        pass


def _body(paths: list[Path | str], skip_invalid: bool):
    def body(conn: psycopg.Connection, load_id: int, progress: Progress) -> Counts:
        files = expand_paths(paths)
        if not files:
            raise InvalidInputError("nothing to load: no TES files among the given paths")
        _tune_session(conn)
        with progress.phase("read_and_copy"):
            found = _stream(conn, load_id, files, skip_invalid, progress)
        with progress.phase("classify"):
            keys = _reject_conflicts(conn, load_id, found, progress)
            write_rejections(conn, load_id, KIND, progress.rejected)
            # Contents this load COPYed (and kept) are its inserts; only the others, stored by
            # earlier loads, need SQL to tell 'unchanged' from 'revert' (none on a first load).
            inserted = len(found.sent.intersection(keys))
            stored = [key for key in keys if key not in found.sent]
            if not stored:
                return Counts(inserted=inserted)
            conn.execute(CREATE_KEYS)
            with (
                conn.cursor() as cur,
                cur.copy(
                    "copy pg_temp.tes_incoming (canonical_url, version, resource_sha256) from stdin"
                ) as copy,
            ):
                for key in stored:
                    copy.write_row(key)
            _, revived, unchanged = conn.execute(CLASSIFY, {"load_id": load_id}).fetchone()
        return Counts(inserted=inserted, revived=revived, unchanged=unchanged)

    return body


def load_tes(
    paths: Iterable[Path | str],
    target: Target,
    *,
    skip_invalid: bool = False,
    lock_timeout: float = 30.0,
    held_lock: load_lock.DatabaseLock | None = None,
) -> LoadResult:
    """Load TES files/folders into raw.tes_valuesets as one load; raise on bad input or a busy lock.

    `target` is DatabaseSettings or an open psycopg connection (not inside a transaction).
    `held_lock` is the load lock the caller already holds (`refinery sync`).
    """
    return run_load(
        target,
        kind=KIND,
        body=_body(list(paths), skip_invalid),
        lock_timeout=lock_timeout,
        held_lock=held_lock,
    )
