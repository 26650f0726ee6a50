"""The configurations load writes only what changed (loaders/land/configurations.py).

Reloading the same snapshot writes no row; one edited configuration writes one row; a removed
one is deleted; the counts of the load record say what was written; and whatever the previous
snapshot, the table ends up as a full rewrite with the new snapshot would leave it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaders.land.configurations import load_configurations
from refinery.connection import DatabaseSettings
from tests._land_helpers import TES, query

COMPARED = (
    "id, jurisdiction_id, child_grouper_url, child_grouper_version, display_name_override, version,"
    " loinc_codes, snomed_codes, icd10_codes, rxnorm_codes, is_active, created_by, created_at"
)


def record(id_: int, **fields: Any) -> dict[str, Any]:
    base = {
        "id": id_,
        "jurisdiction_id": "CA" if id_ % 2 else "NY",
        "child_grouper_url": f"{TES}/rs-grouper-{id_}",
        "child_grouper_version": "20250328",
        "loinc_codes": [f"{id_}-1"],
        "is_active": True,
    }
    base.update(fields)
    return base


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def row_versions(settings: DatabaseSettings) -> dict[int, tuple[str, int]]:
    """id -> (xmin, load_id): xmin changes whenever PostgreSQL writes the row."""
    return {
        row[0]: (row[1], row[2])
        for row in query(settings, "select id, xmin::text, load_id from raw.configurations")
    }


def load_record(settings: DatabaseSettings, load_id: int) -> tuple[int, int, int, int]:
    return query(
        settings,
        "select inserted_count, updated_count, deleted_count, unchanged_count"
        " from raw.loads where load_id = %s",
        (load_id,),
    )[0]


def test_reloading_the_same_snapshot_writes_nothing(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    file = write(tmp_path / "a.json", [record(i) for i in range(1, 51)])
    first = load_configurations(file, fresh_database)
    before = row_versions(fresh_database)
    again = load_configurations(file, fresh_database)
    assert row_versions(fresh_database) == before and len(before) == 50
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 50)
    assert load_record(fresh_database, again.load_id) == (0, 0, 0, 50)
    assert load_record(fresh_database, first.load_id) == (50, 0, 0, 0)
    assert "0 new, 0 changed, 50 unchanged, 0 removed" in again.describe()


def test_one_edit_writes_one_row_and_a_removal_deletes_one(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    records = [record(i) for i in range(1, 51)]
    load_configurations(write(tmp_path / "a.json", records), fresh_database)
    before = row_versions(fresh_database)

    records[9] = record(10, loinc_codes=["10-1", "10-2"])
    edited = load_configurations(write(tmp_path / "b.json", records), fresh_database)
    after = row_versions(fresh_database)
    assert [i for i in before if after[i] != before[i]] == [10]
    assert after[10][1] == edited.load_id
    assert (edited.inserted, edited.updated, edited.deleted) == (0, 1, 0)
    assert load_record(fresh_database, edited.load_id) == (0, 1, 0, 49)
    assert query(fresh_database, "select loinc_codes from raw.configurations where id = 10") == [
        (["10-1", "10-2"],)
    ]

    removed = load_configurations(write(tmp_path / "c.json", records[:20] + records[21:]), fresh_database)
    remaining = row_versions(fresh_database)
    assert 21 not in remaining and remaining == {i: v for i, v in after.items() if i != 21}
    assert (removed.inserted, removed.updated, removed.deleted) == (0, 0, 1)
    assert load_record(fresh_database, removed.load_id) == (0, 0, 1, 49)


def test_given_updated_at_is_compared_and_a_missing_one_is_the_load_time_of_the_change(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    stamp = "2025-02-01T09:30:00Z"
    first = load_configurations(
        write(tmp_path / "a.json", [record(1), record(2, updated_at=stamp)]), fresh_database
    )
    kept = dict(query(fresh_database, "select id, updated_at from raw.configurations"))
    again = load_configurations(
        write(tmp_path / "b.json", [record(1), record(2, updated_at=stamp)]), fresh_database
    )
    assert (again.updated, again.unchanged) == (0, 2)
    assert dict(query(fresh_database, "select id, updated_at from raw.configurations")) == kept
    assert kept[2] == datetime(2025, 2, 1, 9, 30, tzinfo=UTC)
    newer = load_configurations(
        write(
            tmp_path / "c.json", [record(1, is_active=False), record(2, updated_at="2025-03-01T00:00:00Z")]
        ),
        fresh_database,
    )
    assert newer.updated == 2
    stored = dict(query(fresh_database, "select id, updated_at from raw.configurations"))
    assert stored[1] > kept[1] and stored[2] == datetime(2025, 3, 1, tzinfo=UTC)
    assert load_record(fresh_database, first.load_id)[0] == 2


CODES = st.lists(st.sampled_from(["a", "b", "c"]), max_size=2)
RECORD = st.fixed_dictionaries(
    {
        "jurisdiction_id": st.sampled_from(["CA", "NY"]),
        "child_grouper_version": st.sampled_from(["1", "2"]),
        "display_name_override": st.none() | st.just("Override"),
        "loinc_codes": CODES,
        "snomed_codes": CODES,
        "is_active": st.booleans(),
        "updated_at": st.none() | st.sampled_from(["2025-01-01T00:00:00Z", "2025-06-01T00:00:00Z"]),
    }
)
SNAPSHOT = st.dictionaries(st.integers(1, 8), RECORD, max_size=8)


def _records(snapshot: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"id": id_, "child_grouper_url": f"{TES}/rs-grouper-{id_}", **fields}
        for id_, fields in sorted(snapshot.items())
    ]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(previous=SNAPSHOT, snapshot=SNAPSHOT)
def test_outcome_equals_a_full_rewrite(
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    previous: dict[int, dict[str, Any]],
    snapshot: dict[int, dict[str, Any]],
) -> None:
    with psycopg.connect(fresh_database.conninfo(), autocommit=True) as conn:
        if conn.execute("select to_regclass('raw.configurations')").fetchone()[0]:
            conn.execute("delete from raw.configurations")
    load_configurations(write(tmp_path / "previous.json", _records(previous)), fresh_database)
    before = row_versions(fresh_database)
    diffed = load_configurations(write(tmp_path / "snapshot.json", _records(snapshot)), fresh_database)
    incremental = query(fresh_database, f"select {COMPARED}, updated_at from raw.configurations order by id")
    after = row_versions(fresh_database)

    with psycopg.connect(fresh_database.conninfo(), autocommit=True) as conn:
        conn.execute("delete from raw.configurations")  # a full rewrite: every row written anew
    load_configurations(write(tmp_path / "snapshot.json", _records(snapshot)), fresh_database)
    rewritten = query(fresh_database, f"select {COMPARED}, updated_at from raw.configurations order by id")

    given_at = {id_ for id_, fields in snapshot.items() if fields["updated_at"]}
    assert [row[:-1] for row in incremental] == [row[:-1] for row in rewritten]
    assert [row for row in incremental if row[0] in given_at] == [
        row for row in rewritten if row[0] in given_at
    ]

    def same(id_: int) -> bool:
        old, new = previous[id_], snapshot[id_]
        return {k: v for k, v in old.items() if k != "updated_at"} == {
            k: v for k, v in new.items() if k != "updated_at"
        } and (new["updated_at"] is None or new["updated_at"] == old["updated_at"])

    common = previous.keys() & snapshot.keys()
    changed = {id_ for id_ in common if not same(id_)}
    assert (diffed.inserted, diffed.updated, diffed.deleted, diffed.unchanged) == (
        len(snapshot.keys() - previous.keys()),
        len(changed),
        len(previous.keys() - snapshot.keys()),
        len(common) - len(changed),
    )
    # the rows left unchanged were not written at all; the others carry the new load
    assert {id_ for id_ in common if after[id_] == before[id_]} == common - changed
    assert all(after[id_][1] == diffed.load_id for id_ in (snapshot.keys() - (common - changed)))
