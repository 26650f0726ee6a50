"""`refinery load tes`: land TES ValueSet files in `raw.tes_valuesets`, all or nothing.

Files are read one at a time (`loaders.land.reader`), every record is validated and hashed from
the parsed dict, and its canonical JSON is streamed with COPY into a temporary table. Set-based
SQL then decides per (canonical_url, version): same content as the current row → unchanged; a
content seen before but superseded since (a revert) → its `last_seen_load_id` moves to this load;
otherwise a new row. See `schema.sql` for the contract with dbt.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import psycopg
from psycopg.copy import QueuedLibpqWriter

from loaders.errors import InvalidInputError
from loaders.land import lock as load_lock
from loaders.land.loads import Counts, LoadResult, Progress, Target, run_load, write_rejections
from loaders.land.reader import FileRejected, Rejection, TesFile, ValueSetRow, expand_paths

KIND = "tes"

CREATE_INCOMING = """
create temporary table tes_incoming (
    ord bigint not null,
    canonical_url text not null,
    version text not null,
    resource_sha256 text not null,
    resource jsonb,  -- null when raw.tes_valuesets already holds this exact content
    source_file text not null,
    record_index integer not null
) on commit drop
"""

# Every content already stored: the client sends only contents not among them.
KNOWN_CONTENTS = "select canonical_url, version, resource_sha256 from raw.tes_valuesets"

# Two different contents for one (url, version) inside one load: the first two, for the message.
FIND_CONFLICTS = """
with contents as (
    select distinct on (canonical_url, version, resource_sha256)
        canonical_url, version, resource_sha256, source_file, record_index, ord
    from pg_temp.tes_incoming
    order by canonical_url, version, resource_sha256, ord
),

ranked as (
    select
        contents.*,
        row_number() over (partition by canonical_url, version order by ord) as position,
        count(*) over (partition by canonical_url, version) as contents_count
    from contents
)

select canonical_url, version, source_file, record_index, position
from ranked
where contents_count > 1
order by canonical_url, version, position
"""

# One action per (url, version) received: the received content is the current row ('unchanged'),
# an older row ('revert': move its last_seen_load_id here) or new ('insert').
CLASSIFY = """
create temporary table tes_actions on commit drop as
with incoming as (
    select distinct on (canonical_url, version)
        ord, canonical_url, version, resource_sha256
    from pg_temp.tes_incoming
    order by canonical_url, version, ord
),

current_rows as (
    select distinct on (stored.canonical_url, stored.version)
        stored.canonical_url, stored.version, stored.resource_sha256
    from raw.tes_valuesets as stored
    inner join incoming
        on stored.canonical_url = incoming.canonical_url and stored.version = incoming.version
    order by stored.canonical_url, stored.version, stored.last_seen_load_id desc,
        stored.valueset_id desc
)

select
    incoming.ord,
    known.valueset_id,
    case
        when current_rows.resource_sha256 = incoming.resource_sha256 then 'unchanged'
        when known.valueset_id is not null then 'revert'
        else 'insert'
    end as action
from incoming
left join current_rows
    on incoming.canonical_url = current_rows.canonical_url
    and incoming.version = current_rows.version
left join raw.tes_valuesets as known
    on incoming.canonical_url = known.canonical_url
    and incoming.version = known.version
    and incoming.resource_sha256 = known.resource_sha256
"""

REVIVE = """
update raw.tes_valuesets as stored
set last_seen_load_id = %(load_id)s
from pg_temp.tes_actions as actions
where actions.action = 'revert' and stored.valueset_id = actions.valueset_id
"""

INSERT_NEW = """
insert into raw.tes_valuesets (
    canonical_url, version, resource, resource_sha256, source_file, load_id,
    last_seen_load_id, loaded_at
)
select
    incoming.canonical_url,
    incoming.version,
    incoming.resource::jsonb,
    incoming.resource_sha256,
    incoming.source_file,
    %(load_id)s,
    %(load_id)s,
    now()
from pg_temp.tes_actions as actions
inner join pg_temp.tes_incoming as incoming on actions.ord = incoming.ord
where actions.action = 'insert'
order by incoming.canonical_url, incoming.version
on conflict (canonical_url, version, resource_sha256) do nothing
"""


def _copy_field(value: str) -> bytes:
    """A value in COPY text format."""
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    ).encode()


def _copy_line(ordinal: int, row: ValueSetRow, source: bytes, *, send_resource: bool = True) -> bytes:
    # Canonical JSON holds no raw newline, CR or tab (JSON escapes them): only backslashes double.
    resource = row.data.replace(b"\\", b"\\\\") if send_resource else b"\\N"
    return b"\t".join(
        (
            str(ordinal).encode(),
            _copy_field(row.canonical_url),
            _copy_field(row.version),
            row.sha256.encode(),
            resource,
            source,
            str(row.index).encode(),
        )
    ) + b"\n"


def _stream(
    conn: psycopg.Connection, files: list[Path], skip_invalid: bool, progress: Progress
) -> None:
    """COPY every valid record of every file into pg_temp.tes_incoming, one file at a time.

    A content already stored is sent without its resource (re-runs cost the server almost
    nothing); new contents are parsed to jsonb by the server while this process reads on, since a
    background thread feeds the COPY.
    """
    known = {tuple(row) for row in conn.execute(KNOWN_CONTENTS)}
    ordinal = 0
    with conn.cursor() as cur, cur.copy(
        "copy pg_temp.tes_incoming"
        " (ord, canonical_url, version, resource_sha256, resource, source_file, record_index)"
        " from stdin",
        writer=QueuedLibpqWriter(cur),
    ) as copy:
        for path in files:
            try:
                document = TesFile(path)
            except FileRejected as exc:
                if not skip_invalid:
                    raise exc.rejection.error() from exc
                progress.rejected.append(exc.rejection)
                continue
            source = _copy_field(document.source)
            for item in document.items():
                if isinstance(item, ValueSetRow):
                    ordinal += 1
                    new = (item.canonical_url, item.version, item.sha256) not in known
                    copy.write(_copy_line(ordinal, item, source, send_resource=new))
                elif skip_invalid:
                    progress.rejected.append(item)
                else:
                    raise item.error()
            progress.files.append(document.info)


def _reject_conflicts(conn: psycopg.Connection, skip_invalid: bool, progress: Progress) -> None:
    """Two contents for one (url, version) in one load: refuse, or reject every such record."""
    rows = conn.execute(FIND_CONFLICTS).fetchall()
    if not rows:
        return
    if not skip_invalid:
        url, version, source, index, _ = rows[0]
        other = rows[1]
        raise Rejection(
            source,
            index,
            f"{url}|{version}",
            f"a different content for the same url|version is in {other[2]} record {other[3]}; "
            "one load may hold only one content per url|version",
        ).error()
    conflicting = conn.execute(
        """
        delete from pg_temp.tes_incoming as incoming
        using (
            select canonical_url, version from pg_temp.tes_incoming
            group by canonical_url, version having count(distinct resource_sha256) > 1
        ) as conflicts
        where incoming.canonical_url = conflicts.canonical_url
            and incoming.version = conflicts.version
        returning incoming.source_file, incoming.record_index, incoming.canonical_url,
            incoming.version, incoming.resource::text
        """
    ).fetchall()
    for source, index, url, version, text in sorted(conflicting, key=lambda row: (row[0], row[1])):
        progress.rejected.append(
            Rejection(
                source, index, f"{url}|{version}",
                "another content for the same url|version is in this load", text,
            )
        )


def _tune_session(conn: psycopg.Connection) -> None:
    """Transaction-local settings that make landing large JSON much faster, when available.

    lz4 TOAST compression is several times faster than the default pglz (PostgreSQL >= 14 built
    with lz4); a larger temp_buffers keeps the temporary table in memory (only settable before
    the session's first temporary table).
    """
    for setting, value in (("default_toast_compression", "lz4"), ("temp_buffers", "256MB")):
        try:
            with conn.transaction():
                conn.execute("select set_config(%s, %s, true)", (setting, value))
        except psycopg.Error:
            pass


def _body(paths: list[Path | str], skip_invalid: bool):
    def body(conn: psycopg.Connection, load_id: int, progress: Progress) -> Counts:
        files = expand_paths(paths)
        if not files:
            raise InvalidInputError("nothing to load: no TES files among the given paths")
        _tune_session(conn)
        conn.execute(CREATE_INCOMING)
        with progress.phase("read_and_copy"):
            _stream(conn, files, skip_invalid, progress)
        with progress.phase("classify"):
            _reject_conflicts(conn, skip_invalid, progress)
            write_rejections(conn, load_id, KIND, progress.rejected)
            conn.execute(CLASSIFY)
            unchanged = conn.execute(
                "select count(*) from pg_temp.tes_actions where action = 'unchanged'"
            ).fetchone()[0]
        with progress.phase("write"):
            revived = conn.execute(REVIVE, {"load_id": load_id}).rowcount
            inserted = conn.execute(INSERT_NEW, {"load_id": load_id}).rowcount
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


def run_cli(args: argparse.Namespace) -> int:
    from loaders import connection

    settings = connection.resolve()
    result = load_tes(
        args.paths, settings, skip_invalid=args.skip_invalid, lock_timeout=args.lock_timeout
    )
    print(result.describe())
    return 0
