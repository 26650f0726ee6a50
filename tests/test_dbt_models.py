"""Integration: load synthetic TES + configurations, build the models, mutate, build again.

refinement_cache is compared with a plain-Python recomputation from the raw tables
(tests/cache_oracle.py) after the first build and after each mutation; the dbt tests (the
sanity checks) must pass; unchanged rows keep their updated_at; a --full-refresh gives the same
table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from loaders.land.configurations import load_configurations
from loaders.land.tes import load_tes
from refinery import dbt
from refinery.connection import DatabaseSettings
from refinery.synthetic import SyntheticSpec, generate
from tests.cache_oracle import actual_cache, differences, expected_cache
from tests.conftest import SHARED_SAMPLE, create_database, drop_database

SERVING = (
    "+refinement_cache +configurations +tes_condition_groupers +tes_reporting_spec_groupers "
    "+tes_additional_context_groupers +tes_condition_grouper_references "
    "+tes_unresolved_references"
)
SPEC = SyntheticSpec(seed=11, jurisdictions=4, conditions=30, configurations_per_jurisdiction=25)


def build(settings: DatabaseSettings, *extra: str, command: str = "build") -> dict:
    outcome = dbt.run([command, "--select", *SERVING.split(), *extra], settings)
    results = dbt.run_results()
    failures = [r["unique_id"] for r in results["results"] if r["status"] in ("fail", "error")]
    assert outcome.exit_code == 0 and not failures, failures
    return results


@pytest.fixture(scope="module")
def built(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseSettings]:
    settings = create_database(server, "refinery_models")
    out = tmp_path_factory.mktemp("synthetic")
    summary = generate(out, SPEC)
    load_tes([summary.tes_dir], settings)
    load_configurations(summary.configurations_file, settings)
    try:
        build(settings)
        yield settings
    finally:
        drop_database(server, settings)


def test_first_build_matches_python_recomputation(built: DatabaseSettings) -> None:
    with psycopg.connect(built.conninfo()) as conn:
        expected = expected_cache(conn)
        actual = actual_cache(conn)
        counted = conn.execute("select count(*) from refiner.configurations where is_counted").fetchone()[0]
        reasons = dict(
            conn.execute(
                "select exclusion_reason, count(*) from refiner.configurations "
                "where not is_counted group by 1"
            ).fetchall()
        )
    assert len(expected) > 50
    assert differences(expected, actual) == []
    assert counted == len(actual)
    # the generator plants inactive, unknown-jurisdiction and missing-grouper configurations
    assert set(reasons) <= {
        "inactive",
        "unknown_jurisdiction",
        "grouper_not_loaded",
        "grouper_has_no_parent",
        "superseded_by_newer_configuration",
    }


def test_rs_groupers_keep_every_code_system(built: DatabaseSettings) -> None:
    with psycopg.connect(built.conninfo()) as conn:
        systems = {
            row[0]
            for row in conn.execute(
                "select distinct jsonb_object_keys(codes_by_system) from refiner.tes_reporting_spec_groupers"
            )
        }
        bad_snomed = conn.execute(
            "select count(*) from refiner.tes_reporting_spec_groupers "
            "where snomed_code is distinct from coalesce(focus_snomed_code, url_snomed_code)"
        ).fetchone()[0]
    assert {"snomed", "loinc", "icd10", "cvx", "cpt"} <= systems
    assert bad_snomed == 0


def _snapshot(settings: DatabaseSettings) -> dict:
    with psycopg.connect(settings.conninfo()) as conn:
        return actual_cache(conn)


def test_mutations_then_incremental_build_equals_recomputation_and_full_refresh(
    built: DatabaseSettings,
) -> None:
    before = _snapshot(built)
    with psycopg.connect(built.conninfo()) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "select id from refiner.configurations where is_counted order by id limit 4"
            )
        ]
        edited, deactivated, deleted, untouched = ids
        conn.execute(
            "update raw.configurations set loinc_codes = array['99999-9', '12345-6'], "
            "updated_at = updated_at + interval '1 day' where id = %s",
            (edited,),
        )
        conn.execute("update raw.configurations set is_active = false where id = %s", (deactivated,))
        conn.execute("delete from raw.configurations where id = %s", (deleted,))
        # a re-published RS grouper: same url and version, other codes, a newer load
        url, version, resource = conn.execute(
            "select t.child_grouper_url, t.child_grouper_version, v.resource "
            "from refiner.configurations t join raw.tes_valuesets v "
            "on v.canonical_url = t.child_grouper_url and v.version = t.child_grouper_version "
            "where t.is_counted and t.id not in (%s, %s, %s, %s) order by t.id limit 1",
            (edited, deactivated, deleted, untouched),
        ).fetchone()
        resource["compose"]["include"].append(
            {"system": "http://hl7.org/fhir/sid/cvx", "concept": [{"code": "REPUBLISHED-1"}]}
        )
        republish(conn, resource)
        conn.commit()
        keys = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "select id, snomed_code, jurisdiction_id from refiner.configurations where id = any(%s)",
                (ids,),
            )
        }
    build(built)
    after = _snapshot(built)
    with psycopg.connect(built.conninfo()) as conn:
        assert differences(expected_cache(conn), after) == []
    assert keys[deleted] not in after or keys[deleted] in {keys[edited]}
    assert after[keys[untouched]]["updated_at"] == before[keys[untouched]]["updated_at"]
    assert after[keys[edited]]["updated_at"] > before[keys[edited]]["updated_at"]
    assert "99999-9" in after[keys[edited]]["codes_by_system"]["loinc"]
    changed_by_republish = [k for k, row in after.items() if "REPUBLISHED-1" in row["aggregated_codes"]]
    assert changed_by_republish
    unchanged = [
        k for k in before.keys() & after.keys() if before[k]["content_sha256"] == after[k]["content_sha256"]
    ]
    assert unchanged and all(before[k]["updated_at"] == after[k]["updated_at"] for k in unchanged)

    # a no-op build rewrites nothing
    build(built, command="run")
    assert _snapshot(built) == after

    # full refresh gives the same rows (updated_at aside)
    build(built, "--full-refresh", command="run")
    refreshed = _snapshot(built)

    def strip(table):
        return {k: {c: v for c, v in row.items() if c != "updated_at"} for k, row in table.items()}

    assert strip(refreshed) == strip(after)
    assert url and version


def republish(conn: psycopg.Connection, resource: dict) -> None:
    """Land new content for an existing (url, version) as a newer TES load."""
    import hashlib

    text = json.dumps(resource, sort_keys=True)
    load_id = conn.execute(
        "insert into raw.loads (kind, status, finished_at) "
        "values ('tes', 'succeeded', now()) returning load_id"
    ).fetchone()[0]
    conn.execute(
        "insert into raw.tes_valuesets (canonical_url, version, resource, resource_sha256, "
        "source_file, load_id, last_seen_load_id, loaded_at) "
        "values (%s, %s, %s::jsonb, %s, 'test', %s, %s, now())",
        (
            resource["url"],
            resource["version"],
            text,
            hashlib.sha256(text.encode()).hexdigest(),
            load_id,
            load_id,
        ),
    )


@pytest.mark.skipif(not (SHARED_SAMPLE / "rs-groupers-covid.json").exists(), reason="no shared TES sample")
def test_real_sample_rs_groupers(server: DatabaseSettings, tmp_path: Path) -> None:
    """Real RS groupers: the SNOMED code comes from the focus coding (not the id "2316") and
    CPT and OID-named systems are kept."""
    settings = create_database(server, "refinery_sample")
    try:
        load_tes([SHARED_SAMPLE / "rs-groupers-covid.json"], settings)
        outcome = dbt.run(
            ["build", "--select", "+tes_reporting_spec_groupers", "--indirect-selection", "cautious"],
            settings,
        )
        assert outcome.exit_code == 0
        with psycopg.connect(settings.conninfo()) as conn:
            rows = dict(
                conn.execute(
                    "select snomed_code, codes_by_system from refiner.tes_reporting_spec_groupers"
                ).fetchall()
            )
        assert set(rows) == {"840539006", "186747009"}
        covid = rows["840539006"]
        assert {"snomed", "loinc", "icd10", "cpt"} <= set(covid)
        assert "urn:oid:2.16.840.1.113883.12.112" in covid
        assert len(covid["loinc"]) == 189
    finally:
        drop_database(server, settings)


CORRUPTIONS = {
    "dropped code": "aggregated_codes = aggregated_codes[2:]",
    "reordered codes": "aggregated_codes = aggregated_codes[2:] || aggregated_codes[1:1]",
    "repeated code": "aggregated_codes = aggregated_codes || aggregated_codes[1:1]",
    "swapped system code": "codes_by_system = jsonb_set(codes_by_system, "
    "array[(select min(k) from jsonb_object_keys(codes_by_system) as k), '0'], "
    "'\"not-a-real-code\"')",
    "stale content hash": "content_sha256 = repeat('0', 64)",
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_recomputation_test_catches_corrupted_rows(built: DatabaseSettings, corruption: str) -> None:
    """The singular test assert_refinement_cache_matches_recomputation fails on each corruption
    of one row (and passes again once the table is rebuilt)."""
    with psycopg.connect(built.conninfo(), autocommit=True) as conn:
        key = conn.execute(
            "select snomed_code, jurisdiction_id from refiner.refinement_cache "
            "where cardinality(aggregated_codes) > 2 order by 1, 2 limit 1"
        ).fetchone()
        conn.execute(
            f"update refiner.refinement_cache set {CORRUPTIONS[corruption]} "
            "where snomed_code = %s and jurisdiction_id = %s",
            key,
        )
    try:
        dbt.run(["test", "--select", "assert_refinement_cache_matches_recomputation"], built)
        results = [r for r in dbt.run_results()["results"] if r["unique_id"].startswith("test.")]
        assert [(r["status"], r["failures"]) for r in results] == [("fail", 1)], corruption
    finally:
        build(built, "--full-refresh")


def test_cache_schema_drift_stops_the_build_with_the_command_to_run(built: DatabaseSettings) -> None:
    """A refinement_cache whose columns are not the contract's (e.g. built by an older version)
    is never written to: the build fails naming the --full-refresh that rebuilds it."""
    with psycopg.connect(built.conninfo(), autocommit=True) as conn:
        conn.execute("alter table refiner.refinement_cache add column left_over integer")
        before = conn.execute("select count(*), max(updated_at) from refiner.refinement_cache").fetchone()
    try:
        outcome = dbt.run(["run", "--select", "refinement_cache"], built)
        result = next(r for r in dbt.run_results()["results"] if r["unique_id"].endswith(".refinement_cache"))
        assert outcome.exit_code != 0 and result["status"] == "error"
        assert "left_over" in result["message"]
        assert "refinery build --full-refresh --select refinement_cache" in result["message"]
        with psycopg.connect(built.conninfo()) as conn:
            assert (
                conn.execute("select count(*), max(updated_at) from refiner.refinement_cache").fetchone()
                == before
            )
    finally:
        build(built, "--full-refresh")
    with psycopg.connect(built.conninfo()) as conn:
        assert differences(expected_cache(conn), actual_cache(conn)) == []


SYNCED = "refiner.refinement_cache__synced_partitions"
FINGERPRINTS = "refiner_intermediate.int_cache_inputs_fingerprinted"


def _synced(settings: DatabaseSettings) -> dict[str, tuple[str, object]]:
    """The side table: jurisdiction -> (fingerprint, synced_at)."""
    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute(f"select partition_key, inputs_fingerprint, synced_at from {SYNCED}").fetchall()
    return {key: (fingerprint, synced_at) for key, fingerprint, synced_at in rows}


def _synced_fingerprints(settings: DatabaseSettings) -> dict[str, str]:
    """The side table's fingerprints alone: jurisdiction -> fingerprint."""
    return {key: fingerprint for key, (fingerprint, _) in _synced(settings).items()}


def _fingerprints(settings: DatabaseSettings) -> dict[str, str]:
    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute(f"select jurisdiction_id, inputs_fingerprint from {FINGERPRINTS}").fetchall()
    return dict(rows)


def _cache_node_status(results: dict) -> str:
    return next(
        r["adapter_response"]["_message"]
        for r in results["results"]
        if r["unique_id"].endswith(".refinement_cache")
    )


def _edit_configuration_in(settings: DatabaseSettings, jurisdiction: str, avoid: tuple[str, str]) -> None:
    """Give one counted configuration of `jurisdiction` (not the one of key `avoid`) a new code."""
    with psycopg.connect(settings.conninfo()) as conn:
        edited = conn.execute(
            "select id from refiner.configurations where is_counted and jurisdiction_id = %s "
            "and (snomed_code, jurisdiction_id) <> (%s, %s) order by id limit 1",
            (jurisdiction, *avoid),
        ).fetchone()[0]
        conn.execute(
            "update raw.configurations set loinc_codes = loinc_codes || array['55555-5'], "
            "updated_at = updated_at + interval '1 day' where id = %s",
            (edited,),
        )


def test_the_cache_diffs_only_jurisdictions_whose_inputs_changed(built: DatabaseSettings) -> None:
    """inputs_fingerprint, partitioned by jurisdiction: a build diffs only the jurisdictions whose
    counted (key, source_sha256) pairs are not the ones the table was last written from, and
    runs none of the model's SQL when no jurisdiction changed. Shown by a row deleted behind
    dbt's back: it stays deleted while its jurisdiction's inputs are unchanged (even when
    another jurisdiction's are), and comes back once they change. The full build records the
    same fingerprints, and a table without its side table diffs every jurisdiction it holds on
    its next build."""
    build(built, "--full-refresh", command="run")
    recorded = _synced(built)
    assert {key: fingerprint for key, (fingerprint, _) in recorded.items()} == _fingerprints(built)
    with psycopg.connect(built.conninfo(), autocommit=True) as conn:
        per_jurisdiction = dict(
            conn.execute(
                "select jurisdiction_id, count(*) from refiner.refinement_cache group by 1"
            ).fetchall()
        )
        assert {
            key: int(fingerprint.split(":")[0]) for key, (fingerprint, _) in recorded.items()
        } == per_jurisdiction
        victim = conn.execute(
            "select snomed_code, jurisdiction_id from refiner.refinement_cache order by 1, 2 limit 1"
        ).fetchone()
        other = conn.execute(
            "select min(jurisdiction_id) from refiner.refinement_cache where jurisdiction_id <> %s",
            (victim[1],),
        ).fetchone()[0]
        others_active = [
            row[0]
            for row in conn.execute(
                "select id from raw.configurations where jurisdiction_id = %s and is_active", (other,)
            )
        ]
        conn.execute(
            "delete from refiner.refinement_cache where snomed_code = %s and jurisdiction_id = %s", victim
        )
    try:
        # nothing changed: the gate stays shut, the model's SQL does not run
        assert _cache_node_status(build(built, command="run")) == "INSERT 0 0"
        assert _synced(built) == recorded
        with psycopg.connect(built.conninfo()) as conn:
            assert victim not in actual_cache(conn)

        # another jurisdiction changed: only it is diffed (its row rewritten, the victim's
        # jurisdiction untouched: the deleted row stays deleted), only its fingerprint is new
        _edit_configuration_in(built, other, victim)
        assert _cache_node_status(build(built, command="run")) == "INSERT 0 1"
        after_other = _synced(built)
        assert {key for key in recorded if after_other[key] != recorded[key]} == {other}
        with psycopg.connect(built.conninfo()) as conn:
            assert victim not in actual_cache(conn)

        # the victim's jurisdiction changed: its diff puts the deleted row back
        _edit_configuration_in(built, victim[1], victim)
        assert _cache_node_status(build(built, command="run")) == "INSERT 0 2"
        with psycopg.connect(built.conninfo()) as conn:
            actual = actual_cache(conn)
            assert victim in actual
            assert differences(expected_cache(conn), actual) == []
        current = _fingerprints(built)
        assert _synced_fingerprints(built) == current

        # no side table (dropped), and meanwhile a jurisdiction lost every configuration: the
        # next build diffs every jurisdiction the cache holds and deletes the lost one's rows
        with psycopg.connect(built.conninfo(), autocommit=True) as conn:
            conn.execute(f"drop table {SYNCED}")
            conn.execute(
                "update raw.configurations set is_active = false where id = any(%s)", (others_active,)
            )
        assert _cache_node_status(build(built, command="run")) == "INSERT 0 0"
        with psycopg.connect(built.conninfo()) as conn:
            actual = actual_cache(conn)
            assert not any(jurisdiction == other for _, jurisdiction in actual)
            assert differences(expected_cache(conn), actual) == []
        current = _fingerprints(built)
        assert other not in current
        assert _synced_fingerprints(built) == current

        # the full build records the same fingerprints from the same inputs
        build(built, "--full-refresh", command="run")
        assert _synced_fingerprints(built) == current
    finally:
        with psycopg.connect(built.conninfo(), autocommit=True) as conn:
            conn.execute(
                "update raw.configurations set is_active = true where id = any(%s)", (others_active,)
            )
        build(built, "--full-refresh")


def _use_project_with_cache_model(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    edit: Callable[[str], str],
) -> None:
    """Point `refinery` at a copy of the project whose refinement_cache.sql is edit(its text)."""
    from bench.project import snapshot_project

    project = snapshot_project(tmp_path / "project", working_tree=True)
    model = project / "models" / "marts" / "serving" / "refinement_cache.sql"
    text = model.read_text()
    edited = edit(text)
    assert edited != text, "the edit changed nothing in refinement_cache.sql"
    model.write_text(edited)
    monkeypatch.setenv("REFINERY_PROJECT_DIR", str(project))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))


MISCONFIGURATIONS = {
    "delete_if_null names a key": (
        "delete_if_null='source_sha256'",
        "delete_if_null='snomed_code'",
        "delete_if_null of {relation} must name one of its non-key columns, not snomed_code",
    ),
    "inputs_fingerprint without partition_by": (
        "'partition_by': 'jurisdiction_id',",
        "",
        "inputs_fingerprint of {relation} needs `ref` (a model with one row per partition), "
        "`partition_by` and `column` (its fingerprint)",
    ),
}


@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
def test_materialization_misconfiguration_is_a_clear_compile_error(
    built: DatabaseSettings,
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wrong incremental_upsert option stops the node with a message naming the option and the
    model, before anything is written."""
    original, replacement, message = MISCONFIGURATIONS[case]
    _use_project_with_cache_model(tmp_path, monkeypatch, lambda text: text.replace(original, replacement))
    with psycopg.connect(built.conninfo()) as conn:
        before = conn.execute("select count(*), max(updated_at) from refiner.refinement_cache").fetchone()
    outcome = dbt.run(["run", "--select", "refinement_cache"], built)
    result = next(r for r in dbt.run_results()["results"] if r["unique_id"].endswith(".refinement_cache"))
    relation = f'"{built.dbname}"."refiner"."refinement_cache"'
    assert outcome.exit_code != 0 and result["status"] == "error"
    assert message.format(relation=relation) in result["message"]
    with psycopg.connect(built.conninfo()) as conn:
        assert (
            conn.execute("select count(*), max(updated_at) from refiner.refinement_cache").fetchone()
            == before
        )


def test_without_inputs_fingerprint_the_side_table_is_dropped(
    built: DatabaseSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Turning the option off drops refinement_cache__synced_partitions, so that fingerprints
    that stopped being kept can never shut the gate when the option is turned on again."""

    def without_inputs_fingerprint(text: str) -> str:
        start = text.index("    inputs_fingerprint={")
        end = text.index("},\n", start) + len("},\n")
        return text[:start] + text[end:]

    assert _synced(built)
    with monkeypatch.context() as patched:
        _use_project_with_cache_model(tmp_path, patched, without_inputs_fingerprint)
        assert dbt.run(["run", "--select", "refinement_cache"], built).exit_code == 0
    with psycopg.connect(built.conninfo()) as conn:
        assert conn.execute("select to_regclass(%s)", (SYNCED,)).fetchone() == (None,)
    # the project as it is keeps it again from its next build on
    assert _cache_node_status(build(built, command="run")) == "INSERT 0 0"
    assert _synced_fingerprints(built) == _fingerprints(built)
