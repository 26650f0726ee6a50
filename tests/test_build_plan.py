"""Planned builds (refinery/build_plan.py): a build runs what changed since the last successful
build recorded in the database, and the cache still equals a recomputation and a full refresh.

One database goes through a sequence of syncs and builds: first build (everything), nothing
changed (dbt not started), configuration edits, deletions and deactivations (only the
configuration path, no TES model, the rows written checked instead of the whole cache), a TES
re-publication and a new release (everything, incrementally), a build killed mid-way (the next
one converges) and a --full-refresh (the same rows). After each step the cache equals the
plain-Python recomputation (tests/cache_oracle.py); at the end it equals a full refresh.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from loaders.land.configurations import load_configurations
from loaders.land.tes import load_tes
from refinery import build_plan, dbt
from refinery.build_plan import ALL, CONFIGURATIONS, FULL_REFRESH, NOTHING, TES, BuildRecord, Inputs
from refinery.commands.sync import StepLog, SyncOptions, sync
from refinery.connection import DatabaseSettings
from refinery.synthetic import SyntheticSpec, generate
from tests.cache_oracle import actual_cache, differences, expected_cache
from tests.conftest import create_database, drop_database
from tests.reliability._helpers import start_refinery, wait_for_query, wait_idle

SPEC = SyntheticSpec(seed=23, jurisdictions=4, conditions=16, configurations_per_jurisdiction=12)
CONFIGURATION_SOURCE = "source.refinery.refiner.configurations"
FULL_TEST = "test.refinery.assert_refinement_cache_matches_recomputation"
WRITTEN_TEST = "test.refinery.assert_refinement_cache_written_rows_match_recomputation"


# --- the decision alone ------------------------------------------------------------------------


def _record(inputs: Inputs) -> BuildRecord:
    return BuildRecord(7, ALL, inputs, datetime.now(UTC))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, NOTHING),
        ({"configurations": "other"}, CONFIGURATIONS),
        ({"tes": "other"}, TES),
        ({"project": "other"}, ALL),
        ({"tes": "other", "configurations": "other"}, TES),
        ({"project": "other", "tes": "other"}, ALL),
        ({"project": "other", "configurations": "other"}, ALL),
    ],
)
def test_the_plan_follows_the_inputs_that_changed(changes: dict[str, str], expected: str) -> None:
    before = Inputs(tes="t", configurations="c", project="p")
    chosen = build_plan.decide(replace(before, **changes), _record(before))
    assert chosen.kind == expected
    assert (chosen.dbt_args == ()) == (expected == NOTHING)
    assert "build 7" in chosen.reason


def test_after_an_unplanned_build_everything_runs() -> None:
    inputs = Inputs(tes="t", configurations="c", project="p")
    unplanned = BuildRecord(8, build_plan.UNPLANNED, Inputs("", "", ""), datetime.now(UTC))
    chosen = build_plan.decide(inputs, unplanned)
    assert chosen.kind == ALL and "build 8" in chosen.reason


def test_no_record_plans_everything_and_full_refresh_wins() -> None:
    inputs = Inputs(tes="t", configurations="c", project="p")
    assert build_plan.decide(inputs, None).kind == ALL
    assert build_plan.decide(inputs, _record(inputs), full_refresh=True).kind == FULL_REFRESH
    assert "--full-refresh" in build_plan.decide(inputs, None, full_refresh=True).dbt_args
    configurations_only = build_plan.Plan(CONFIGURATIONS, "", inputs, None).dbt_args
    assert "source:refiner.configurations+" in configurations_only
    assert "tag:full_recomputation" in configurations_only
    tes = build_plan.Plan(TES, "", inputs, None).dbt_args
    assert "--select" not in tes and "tag:full_recomputation" in tes and "unit_test" in tes
    everything = build_plan.Plan(ALL, "", inputs, None).dbt_args
    assert "tag:written_rows" in everything and "tag:full_recomputation" not in everything


def test_the_project_fingerprint_follows_every_project_file(tmp_path: Path) -> None:
    (tmp_path / "models" / "staging").mkdir(parents=True)
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    model = tmp_path / "models" / "staging" / "a.sql"
    model.write_text("select 1")
    (tmp_path / "README.md").write_text("not the project")
    first = build_plan.project_fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("still not the project")
    assert build_plan.project_fingerprint(tmp_path) == first
    model.write_text("select 2")
    changed = build_plan.project_fingerprint(tmp_path)
    assert changed != first
    model.rename(tmp_path / "models" / "staging" / "b.sql")
    assert build_plan.project_fingerprint(tmp_path) not in (first, changed)


# --- a sequence on a real database -------------------------------------------------------------


@pytest.fixture(scope="module")
def planned(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = create_database(server, "refinery_plan")
    out = tmp_path_factory.mktemp("synthetic-plan")
    summary = generate(out, SPEC)
    load_tes([summary.tes_dir], settings)
    load_configurations(summary.configurations_file, settings)
    try:
        yield {
            "settings": settings,
            "tes_dir": summary.tes_dir,
            "configurations": summary.configurations_file,
        }
    finally:
        drop_database(server, settings)


def _run_results_path() -> Path:
    return dbt.target_path() / "run_results.json"


def _ran(since: float) -> list[str] | None:
    """The node ids of the dbt run that wrote run_results.json after `since`, else None."""
    path = _run_results_path()
    if not path.exists() or path.stat().st_mtime_ns <= since:
        return None
    return [result["unique_id"] for result in json.loads(path.read_text())["results"]]


def _stamp() -> float:
    path = _run_results_path()
    return path.stat().st_mtime_ns if path.exists() else 0


def _models_off_the_configuration_path() -> set[str]:
    """Models that are not descendants of the configurations source: the TES-only path."""
    manifest = json.loads((dbt.target_path() / "manifest.json").read_text())
    children: dict[str, list[str]] = manifest["child_map"]
    downstream: set[str] = set()
    todo = [CONFIGURATION_SOURCE]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in downstream:
                downstream.add(child)
                todo.append(child)
    models = {node for node in manifest["nodes"] if node.startswith("model.")}
    return models - downstream


def _sync(settings: DatabaseSettings, tes_dir: Path, configurations: Path | None = None) -> dict[str, Any]:
    stream = io.StringIO()
    sync(settings, SyncOptions(tes_dir, configurations, lock_timeout=10), log=StepLog("plan-test", stream))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return {line["step"]: line for line in lines}


def _assert_cache_is_recomputed(settings: DatabaseSettings) -> dict[Any, Any]:
    with psycopg.connect(settings.conninfo()) as conn:
        expected = expected_cache(conn)
        actual = actual_cache(conn)
    assert expected and differences(expected, actual) == []
    return actual


def _edit_snapshot(source: Path, target: Path, edit) -> Path:
    records = json.loads(source.read_text())
    target.write_text(json.dumps(edit(records)))
    return target


def _planned_build(settings: DatabaseSettings, **kwargs: Any) -> build_plan.PlannedBuild:
    built = build_plan.run_planned(settings, **kwargs)
    assert built.exit_code == 0, built.statuses
    return built


def _republish(conn: psycopg.Connection, marker: str, *, version: str | None = None) -> None:
    """Land a changed content of every RS grouper (another version too, when given) in raw."""
    rows = conn.execute(
        "select distinct on (canonical_url, version) resource from raw.tes_valuesets"
        " where canonical_url like '%%rs-grouper-%%' order by canonical_url, version, last_seen_load_id desc"
    ).fetchall()
    load_id = conn.execute(
        "insert into raw.loads (kind, status, finished_at)"
        " values ('tes', 'succeeded', now()) returning load_id"
    ).fetchone()[0]
    for (resource,) in rows[:3]:
        resource["compose"]["include"].append(
            {"system": "http://loinc.org", "concept": [{"code": f"{marker}-1"}]}
        )
        if version is not None:
            resource["version"] = version
        text = json.dumps(resource, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        conn.execute(
            "insert into raw.tes_valuesets (canonical_url, version, resource, resource_sha256,"
            " source_file, load_id, last_seen_load_id, loaded_at)"
            " values (%s, %s, %s::jsonb, %s, 'plan-test', %s, %s, now())",
            (resource["url"], resource["version"], text, digest, load_id, load_id),
        )


def test_syncs_cost_what_changed_and_the_cache_stays_exact(planned: dict[str, Any], tmp_path: Path) -> None:
    settings: DatabaseSettings = planned["settings"]
    tes_dir: Path = planned["tes_dir"]
    snapshot: Path = planned["configurations"]

    # 1. the first build: everything, recorded
    stamp = _stamp()
    first = _planned_build(settings)
    assert first.plan.kind == ALL and first.build_id is not None
    ran = _ran(stamp)
    assert ran is not None and FULL_TEST in ran and WRITTEN_TEST not in ran
    off_path = _models_off_the_configuration_path()
    assert off_path and off_path <= set(ran)
    _assert_cache_is_recomputed(settings)

    # 2. nothing loaded since: the sync's build step is skipped and dbt does not start
    stamp = _stamp()
    steps = _sync(settings, tes_dir)
    assert steps["load_tes"]["status"] == "unchanged"
    assert (steps["build"]["status"], steps["build"]["plan"]) == ("skipped", NOTHING)
    assert _ran(stamp) is None

    # the same snapshot loaded again changes no row: still nothing to build
    steps = _sync(settings, tes_dir, snapshot)
    assert steps["load_configurations"]["status"] == "ok"
    assert (steps["build"]["status"], steps["build"]["plan"]) == ("skipped", NOTHING)
    assert _ran(stamp) is None

    # 3. one configuration edited: only the configuration path, its rows checked, not the whole cache
    def edit_one(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        target = next(record for record in records if record.get("is_active"))
        target["loinc_codes"] = sorted({*target.get("loinc_codes", []), "PLAN-EDIT-1"})
        target["updated_at"] = "2031-01-01T00:00:00Z"
        return records

    edited = _edit_snapshot(snapshot, tmp_path / "edited.json", edit_one)
    stamp = _stamp()
    steps = _sync(settings, tes_dir, edited)
    assert (steps["build"]["status"], steps["build"]["plan"]) == ("ok", CONFIGURATIONS)
    ran = _ran(stamp)
    assert ran is not None
    assert not set(ran) & off_path, sorted(set(ran) & off_path)
    assert "model.refinery.refinement_cache" in ran and WRITTEN_TEST in ran and FULL_TEST not in ran
    assert not [node for node in ran if node.startswith("unit_test.")]
    _assert_cache_is_recomputed(settings)
    written = json.loads(_run_results_path().read_text())["results"]
    assert {r["unique_id"]: r["status"] for r in written}[WRITTEN_TEST] == "pass"

    # 4. deletions and a deactivation: the configuration path again
    def delete_some(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        active = [record for record in records if record.get("is_active")]
        active[1]["is_active"] = False
        active[1]["updated_at"] = "2031-01-02T00:00:00Z"
        gone = {active[2]["id"], active[3]["id"]}
        return [record for record in records if record["id"] not in gone]

    deleted = _edit_snapshot(edited, tmp_path / "deleted.json", delete_some)
    steps = _sync(settings, tes_dir, deleted)
    assert (steps["build"]["status"], steps["build"]["plan"]) == ("ok", CONFIGURATIONS)
    _assert_cache_is_recomputed(settings)

    # 5. a TES re-publication (other content, same versions): every model, incrementally, and
    # the checks of the rows it wrote, not of the whole cache
    with psycopg.connect(settings.conninfo()) as conn:
        _republish(conn, "REPUB")
    stamp = _stamp()
    built = _planned_build(settings)
    assert built.plan.kind == TES and "tes changed" in built.plan.reason
    ran = _ran(stamp)
    assert ran is not None and off_path <= set(ran)
    assert WRITTEN_TEST in ran and FULL_TEST not in ran
    assert not [node for node in ran if node.startswith("unit_test.")]
    _assert_cache_is_recomputed(settings)

    # 6. a new release (new versions) and a configuration edit together: every model
    with psycopg.connect(settings.conninfo()) as conn:
        _republish(conn, "RELEASE", version="99")
        conn.execute(
            "update raw.configurations set child_grouper_version = '99'"
            " where id = (select min(id) from raw.configurations where is_active)"
            " and child_grouper_url in (select canonical_url from raw.tes_valuesets where version = '99')"
        )
    built = _planned_build(settings)
    assert built.plan.kind == TES
    _assert_cache_is_recomputed(settings)
    assert _planned_build(settings).plan.kind == NOTHING

    # 7. a build killed while the cache is written: nothing recorded, the next build converges
    with psycopg.connect(settings.conninfo()) as conn:
        conn.execute(
            "update raw.configurations set snomed_codes = array['PLAN-KILL-1'], updated_at = updated_at"
            " + interval '1 day' where id = (select max(id) from raw.configurations where is_active)"
        )
    with psycopg.connect(settings.conninfo()) as conn:
        before_kill = actual_cache(conn)
        records_before = conn.execute("select count(*) from refiner.refinery_builds").fetchone()[0]
    with psycopg.connect(settings.conninfo()) as holder:
        holder.execute("lock table refiner.refinement_cache in access exclusive mode")
        process = start_refinery(["build"], settings)
        wait_for_query(settings, '%"node_id": "model.refinery.refinement_cache"%', process)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
        holder.rollback()
    wait_idle(settings)
    with psycopg.connect(settings.conninfo()) as conn:
        assert actual_cache(conn) == before_kill
        assert conn.execute("select count(*) from refiner.refinery_builds").fetchone()[0] == records_before
    rerun = _planned_build(settings)
    assert rerun.plan.kind == CONFIGURATIONS
    converged = _assert_cache_is_recomputed(settings)

    # 8. --full-refresh: everything again, the same rows
    refreshed_build = _planned_build(settings, full_refresh=True)
    assert refreshed_build.plan.kind == FULL_REFRESH
    refreshed = _assert_cache_is_recomputed(settings)

    def without_updated_at(rows: dict[Any, Any]) -> dict[Any, Any]:
        return {key: {c: v for c, v in row.items() if c != "updated_at"} for key, row in rows.items()}

    assert without_updated_at(refreshed) == without_updated_at(converged)
    assert _planned_build(settings).plan.kind == NOTHING

    # 9. a build with its own dbt arguments (here a --vars override the fingerprints cannot see)
    # is not trusted: the next planned build runs everything, and puts the cache back to what
    # the project says
    override = "{include_additional_context_codes: true}"
    process = start_refinery(["build", "--select", "refinement_cache", "--vars", override], settings)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    with psycopg.connect(settings.conninfo()) as conn:
        assert build_plan.latest_build(conn, "refiner").plan == build_plan.UNPLANNED
    after_unplanned = _planned_build(settings)
    assert after_unplanned.plan.kind == ALL and "own dbt arguments" in after_unplanned.plan.reason
    assert without_updated_at(_assert_cache_is_recomputed(settings)) == without_updated_at(converged)
    assert _planned_build(settings).plan.kind == NOTHING


def _payload_rows(settings: DatabaseSettings) -> dict[tuple[str, str], tuple[str, str]]:
    """refiner_payloads by key: (row as JSON text, xmin: which transaction wrote it)."""
    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute(
            "select jurisdiction_id, condition_grouper_url, to_jsonb(p)::text, xmin::text"
            " from refiner.refiner_payloads as p"
        ).fetchall()
    return {(jurisdiction, url): (row, xmin) for jurisdiction, url, row, xmin in rows}


def test_payloads_are_rewritten_only_where_their_inputs_changed(planned: dict[str, Any]) -> None:
    """refiner_payloads is incremental per payload: an edit rewrites the payload of its
    condition and leaves every other row as it was (same content, same transaction), its
    jurisdiction's other payloads included; a jurisdiction left with no counted configuration
    loses its payloads; the result equals a --full-refresh of the model."""
    settings: DatabaseSettings = planned["settings"]
    assert _planned_build(settings).plan.kind in (NOTHING, ALL, CONFIGURATIONS)
    before = _payload_rows(settings)
    jurisdictions = sorted({jurisdiction for jurisdiction, _ in before})
    assert len(jurisdictions) >= 3
    edited, emptied = jurisdictions[0], jurisdictions[1]
    assert sum(1 for key in before if key[0] == edited) >= 2  # payloads left alone beside the edited one
    with psycopg.connect(settings.conninfo()) as conn:
        conn.execute(
            "update raw.configurations set loinc_codes = array_append(loinc_codes, 'PAYLOAD-EDIT-1'),"
            " updated_at = updated_at + interval '1 day'"
            " where id = (select min(id) from raw.configurations where is_active and jurisdiction_id = %s)",
            (edited,),
        )
        conn.execute("update raw.configurations set is_active = false where jurisdiction_id = %s", (emptied,))
    assert _planned_build(settings).plan.kind == CONFIGURATIONS
    after = _payload_rows(settings)
    assert not [key for key in after if key[0] == emptied]
    rewritten = [key for key, (row, _) in after.items() if "PAYLOAD-EDIT-1" in row]
    assert len(rewritten) == 1 and rewritten[0][0] == edited
    assert after[rewritten[0]][1] != before[rewritten[0]][1]
    untouched = [key for key in before if key[0] != emptied and key != rewritten[0]]
    assert any(key[0] == edited for key in untouched)
    assert all(after[key] == before[key] for key in untouched)
    outcome = dbt.run(["run", "--select", "refiner_payloads", "--full-refresh"], settings)
    assert outcome.exit_code == 0
    refreshed = _payload_rows(settings)
    assert {key: row for key, (row, _) in refreshed.items()} == {key: row for key, (row, _) in after.items()}


def _check_results(settings: DatabaseSettings) -> dict[str, str]:
    """Run the whole-cache and the written-rows recomputation checks: {test id: pass or fail}."""
    dbt.run(["test", "--select", FULL_TEST.split(".")[-1], WRITTEN_TEST.split(".")[-1]], settings)
    return {
        r["unique_id"]: r["status"]
        for r in dbt.run_results()["results"]
        if r["unique_id"] in (FULL_TEST, WRITTEN_TEST)
    }


def test_the_written_rows_checks_read_the_rows_written(planned: dict[str, Any]) -> None:
    """A planned build stamps the rows it writes (written_at, the time synced_partitions records
    for the write); the written-rows check reads those rows, and in their jurisdictions the keys
    only one side holds, not every row of the jurisdiction: a tampered row the build did not
    write passes it (the whole-cache check catches it), a tampered written row, a missing row
    and a left-over row fail it."""
    settings: DatabaseSettings = planned["settings"]
    _planned_build(settings)
    with psycopg.connect(settings.conninfo()) as conn:
        target = conn.execute(
            "select id, snomed_code, jurisdiction_id from refiner.configurations"
            " where is_counted and cardinality(excluded_codes) = 0 order by id limit 1"
        ).fetchone()
        assert target is not None
        edited_key = (target[1], target[2])
        conn.execute(
            "update raw.configurations set loinc_codes = array_append(loinc_codes, 'WRITTEN-1'),"
            " updated_at = updated_at + interval '1 day' where id = %s",
            (target[0],),
        )
    assert _planned_build(settings).plan.kind == CONFIGURATIONS
    cache = "refiner.refinement_cache"
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        written = conn.execute(
            f"select snomed_code, jurisdiction_id from {cache} where written_at ="
            " (select max(synced_at) from refiner.refinement_cache__synced_partitions)"
        ).fetchall()
        assert written == [edited_key]
        other = conn.execute(
            f"select snomed_code from {cache} where jurisdiction_id = %s and snomed_code <> %s"
            " and not exists (select 1 from refiner.configurations as c where c.is_counted"
            " and cardinality(c.excluded_codes) > 0 and c.snomed_code = refinement_cache.snomed_code"
            " and c.jurisdiction_id = refinement_cache.jurisdiction_id) order by 1 limit 1",
            (edited_key[1], edited_key[0]),
        ).fetchone()
        assert other is not None
        other_key = (other[0], edited_key[1])
        saved = {
            key: conn.execute(
                f"select aggregated_codes from {cache} where snomed_code = %s and jurisdiction_id = %s", key
            ).fetchone()[0]
            for key in (edited_key, other_key)
        }

        def tamper(key: tuple[str, str]) -> None:
            conn.execute(
                f"update {cache} set aggregated_codes = aggregated_codes[2:]"
                " where snomed_code = %s and jurisdiction_id = %s",
                key,
            )

        def restore(key: tuple[str, str]) -> None:
            conn.execute(
                f"update {cache} set aggregated_codes = %s where snomed_code = %s and jurisdiction_id = %s",
                (saved[key], *key),
            )

        assert _check_results(settings) == {FULL_TEST: "pass", WRITTEN_TEST: "pass"}
        # a row of the same jurisdiction the build did not write: out of the written rows' scope
        tamper(other_key)
        assert _check_results(settings) == {FULL_TEST: "fail", WRITTEN_TEST: "pass"}
        restore(other_key)
        # the row the build wrote
        tamper(edited_key)
        assert _check_results(settings) == {FULL_TEST: "fail", WRITTEN_TEST: "fail"}
        restore(edited_key)
        # in the written jurisdiction, a row missing, then a row left over
        insert_row = f"insert into {cache} select * from jsonb_populate_record(null::{cache}, %s)"
        row = conn.execute(
            f"select to_jsonb(c) from {cache} as c where snomed_code = %s and jurisdiction_id = %s", other_key
        ).fetchone()[0]
        conn.execute(f"delete from {cache} where snomed_code = %s and jurisdiction_id = %s", other_key)
        try:
            assert _check_results(settings) == {FULL_TEST: "fail", WRITTEN_TEST: "fail"}
        finally:
            conn.execute(insert_row, (Jsonb(row),))
        left_over = Jsonb(row | {"snomed_code": "LEFT-OVER-1"})
        conn.execute(insert_row, (left_over,))
        try:
            assert _check_results(settings) == {FULL_TEST: "fail", WRITTEN_TEST: "fail"}
        finally:
            conn.execute(f"delete from {cache} where snomed_code = 'LEFT-OVER-1'")
        assert _check_results(settings) == {FULL_TEST: "pass", WRITTEN_TEST: "pass"}
