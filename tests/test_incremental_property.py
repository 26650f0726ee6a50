"""Property: after any sequence of syncs, the cache equals a recomputation from scratch and a
full refresh, and rows whose content did not change keep their updated_at.

Each step changes the raw tables (configurations added - sometimes onto an existing key:
tie-breaking -, edited, deactivated, re-activated, deleted; RS groupers re-published with other
codes; code exclusions (bare, `key|code`, `url|code`; of codes the grouper lists or the
configuration adds); a new release: new versions of an RS grouper and of its parent condition grouper, its
configurations moved to them), sometimes kills a build while it writes the cache, then runs the
planned build a sync runs (refinery/build_plan.py): nothing when nothing changed, the
configuration path when only configurations did, every model (plan tes) when TES did. After
each step the cache equals the plain-Python oracle (tests/cache_oracle.py) and a --full-refresh build of the
same inputs in a second set of schemas (REFINERY_SCHEMA=refiner_refreshed), and so do the
export payloads (refiner_payloads, incremental per jurisdiction).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loaders.land.configurations import load_configurations
from loaders.land.tes import load_tes
from refinery import build_plan, dbinit, dbt
from refinery.build_plan import ALL, CONFIGURATIONS, NOTHING, TES
from refinery.connection import DatabaseSettings
from refinery.environ import scoped_environ
from refinery.synthetic import SyntheticSpec, generate
from tests.cache_oracle import actual_cache, differences, expected_cache
from tests.conftest import create_database, drop_database
from tests.reliability._helpers import start_refinery, wait_for_query, wait_idle

SPEC = SyntheticSpec(seed=5, jurisdictions=3, conditions=12, configurations_per_jurisdiction=10)
REFRESHED = "refiner_refreshed"  # the target schema of the full-refresh builds compared with
CODES = st.lists(
    st.sampled_from(["1000-1", "2000-2", "3000-3", "A01", "B02", "840539006"]), max_size=3, unique=True
)

operation = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 10_000), CODES),
    st.tuples(st.just("deactivate"), st.integers(0, 10_000)),
    st.tuples(st.just("activate"), st.integers(0, 10_000)),
    st.tuples(st.just("delete"), st.integers(0, 10_000)),
    st.tuples(st.just("add"), st.integers(0, 10_000), st.integers(-1, 1), CODES),
    st.tuples(st.just("republish"), st.integers(0, 10_000), st.integers(0, 3)),
    st.tuples(st.just("release"), st.integers(0, 10_000)),
    st.tuples(st.just("exclude"), st.integers(0, 10_000), st.integers(0, 2), st.integers(0, 50), CODES),
)
SHORT_KEYS = {
    "http://loinc.org": "loinc",
    "http://snomed.info/sct": "snomed",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd10",
}
# a step: some changes, then (when True) a build killed while it writes the cache, then a sync
step = st.tuples(st.lists(operation, min_size=1, max_size=4), st.booleans())


def planned_build(settings: DatabaseSettings) -> str:
    """The build a sync runs; its plan's kind."""
    built = build_plan.run_planned(settings)
    assert built.exit_code == 0, built.statuses
    return built.plan.kind


def full_refresh_elsewhere(settings: DatabaseSettings) -> tuple[dict[Any, Any], dict[Any, str]]:
    """The cache and the export payloads a --full-refresh build gives from the same raw tables,
    in other schemas."""
    with scoped_environ({"REFINERY_SCHEMA": REFRESHED}):
        outcome = dbt.run(["run", "--select", "+refiner_payloads", "--full-refresh"], settings)
    assert outcome.exit_code == 0
    with psycopg.connect(settings.conninfo()) as conn:
        return actual_cache(conn, REFRESHED), payloads(conn, REFRESHED)


def payloads(conn: psycopg.Connection, schema: str = "refiner") -> dict[Any, str]:
    """refiner_payloads (incremental per jurisdiction): every row, every column, by its key."""
    rows = conn.execute(
        "select jurisdiction_id, condition_grouper_url, to_jsonb(p)::text"
        f" from {schema}.refiner_payloads as p"
    )
    return {(jurisdiction, url): row for jurisdiction, url, row in rows}


def configurations(conn: psycopg.Connection) -> list[str]:
    """The configurations as a sync compares them: every row, every column but load_id."""
    return [
        row[0]
        for row in conn.execute(
            "select (to_jsonb(c) - 'load_id')::text as row_text from raw.configurations as c order by 1"
        )
    ]


def without_updated_at(rows: dict[Any, Any]) -> dict[Any, Any]:
    return {key: {c: v for c, v in row.items() if c != "updated_at"} for key, row in rows.items()}


@pytest.fixture(scope="module")
def prepared(
    server: DatabaseSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DatabaseSettings]:
    db = create_database(server, "refinery_property")
    summary = generate(tmp_path_factory.mktemp("synthetic"), SPEC)
    load_tes([summary.tes_dir], db)
    load_configurations(summary.configurations_file, db)
    with scoped_environ({"REFINERY_SCHEMA": REFRESHED}):
        dbinit.init(db)
        assert dbt.run(["seed"], db).exit_code == 0
    assert planned_build(db) == ALL
    try:
        yield db
    finally:
        drop_database(server, db)


def apply(conn: psycopg.Connection, op: tuple) -> str | None:
    """Apply one change to the raw tables: "tes" when it landed TES content not stored before,
    "configurations" when it wrote a configuration row, else None. (A step's edits may cancel
    out: whether its configurations changed is judged on the rows themselves.)"""
    ids = [row[0] for row in conn.execute("select id from raw.configurations order by id")]
    kind = op[0]
    if kind in ("edit", "deactivate", "activate", "delete"):
        if not ids:
            return None
        target = ids[op[1] % len(ids)]
        if kind == "edit":
            statement = (
                "update raw.configurations set loinc_codes = %s, "
                "updated_at = updated_at + interval '1 hour' where id = %s"
            )
            changed = conn.execute(statement, (op[2], target)).rowcount
        elif kind == "deactivate":
            statement = "update raw.configurations set is_active = false where id = %s and is_active"
            changed = conn.execute(statement, (target,)).rowcount
        elif kind == "activate":
            statement = "update raw.configurations set is_active = true where id = %s and not is_active"
            changed = conn.execute(statement, (target,)).rowcount
        else:
            changed = conn.execute("delete from raw.configurations where id = %s", (target,)).rowcount
        return "configurations" if changed else None
    if kind == "exclude":
        if not ids:
            return None
        # one code the configuration's RS grouper lists, in the form op[2] picks (bare, short
        # key, system URL), and the codes of op[4] as bare exclusions (some may be added codes:
        # an exclusion beats an addition)
        target = ids[op[1] % len(ids)]
        resource = conn.execute(
            "select v.resource from raw.configurations as c join raw.tes_valuesets as v "
            "on v.canonical_url = c.child_grouper_url and v.version = c.child_grouper_version "
            "where c.id = %s order by v.last_seen_load_id desc limit 1",
            (target,),
        ).fetchone()
        entries = list(op[4])
        listed = [
            (include.get("system"), concept["code"])
            for include in ((resource[0] if resource else {}).get("compose") or {}).get("include") or []
            for concept in include.get("concept") or []
            if include.get("system") in SHORT_KEYS
        ]
        if listed:
            system, code = listed[op[3] % len(listed)]
            entries.append([code, f"{SHORT_KEYS[system]}|{code}", f"{system}|{code}"][op[2]])
        changed = conn.execute(
            "update raw.configurations set excluded_codes = %s, "
            "updated_at = updated_at + interval '1 hour' where id = %s",
            (entries, target),
        ).rowcount
        return "configurations" if changed else None
    if kind == "add":
        template = conn.execute(
            "select jurisdiction_id, child_grouper_url, child_grouper_version, "
            "updated_at, load_id from raw.configurations order by id "
            "offset %s limit 1",
            (op[1] % max(len(ids), 1),),
        ).fetchone()
        if not template:
            return None
        jurisdiction, url, version, updated_at, load_id = template
        new_id = (max(ids) if ids else 0) + 1
        conn.execute(
            "insert into raw.configurations (id, jurisdiction_id, child_grouper_url, "
            "child_grouper_version, snomed_codes, is_active, updated_at, load_id) "
            "values (%s, %s, %s, %s, %s, true, %s, %s)",
            (new_id, jurisdiction, url, version, op[3], updated_at + timedelta(hours=op[2]), load_id),
        )
        return "configurations"
    rows = conn.execute(
        "select distinct on (canonical_url, version) resource from raw.tes_valuesets "
        "where canonical_url like '%%rs-grouper-%%' "
        "order by canonical_url, version, last_seen_load_id desc"
    ).fetchall()
    resource = rows[op[1] % len(rows)][0]
    if kind == "republish":
        includes = resource["compose"]["include"]
        if op[2] == 0 and includes:
            includes[0]["concept"] = includes[0]["concept"][1:]  # drop a code
        else:
            includes.append(
                {"system": "http://loinc.org", "concept": [{"code": f"REPUB-{op[1] % 97}-{op[2]}"}]}
            )
        return "tes" if _land(conn, [resource]) else None
    # a new release: the RS grouper and its parent condition groupers in new versions, and the
    # configurations of the RS grouper moved to its new version
    old_reference = f"{resource['url']}|{resource['version']}"
    release = 1 + conn.execute("select count(*) from raw.loads where kind = 'tes'").fetchone()[0]
    resource["version"] = f"{resource['version']}.r{release}"
    resource["compose"]["include"].append(
        {"system": "http://loinc.org", "concept": [{"code": f"RELEASE-{release}"}]}
    )
    parents = []
    for (parent,) in conn.execute(
        "select distinct on (canonical_url, version) resource from raw.tes_valuesets "
        "where resource -> 'compose' -> 'include' @> jsonb_build_array(jsonb_build_object("
        "'valueSet', jsonb_build_array(%s::text))) "
        "order by canonical_url, version, last_seen_load_id desc",
        (old_reference,),
    ).fetchall():
        parent["version"] = f"{parent['version']}.r{release}"
        for include in parent["compose"]["include"]:
            include["valueSet"] = [
                f"{resource['url']}|{resource['version']}" if reference == old_reference else reference
                for reference in include.get("valueSet", [])
            ]
        parents.append(parent)
    _land(conn, [resource, *parents])
    conn.execute(
        "update raw.configurations set child_grouper_version = %s,"
        " updated_at = updated_at + interval '1 hour' where child_grouper_url = %s",
        (resource["version"], resource["url"]),
    )
    return "tes"


def _land(conn: psycopg.Connection, resources: list[dict[str, Any]]) -> bool:
    """Land ValueSets in raw as one TES load; False when every one is stored already."""
    fresh = []
    for resource in resources:
        text = json.dumps(resource, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        seen = conn.execute(
            "select 1 from raw.tes_valuesets where canonical_url = %s and version = %s "
            "and resource_sha256 = %s",
            (resource["url"], resource["version"], digest),
        ).fetchone()
        if not seen:
            fresh.append((resource, text, digest))
    if not fresh:
        return False
    load_id = conn.execute(
        "insert into raw.loads (kind, status, finished_at) values "
        "('tes', 'succeeded', now()) returning load_id"
    ).fetchone()[0]
    for resource, text, digest in fresh:
        conn.execute(
            "insert into raw.tes_valuesets (canonical_url, version, resource, resource_sha256, "
            "source_file, load_id, last_seen_load_id, loaded_at) "
            "values (%s, %s, %s::jsonb, %s, 'property', %s, %s, now())",
            (resource["url"], resource["version"], text, digest, load_id, load_id),
        )
    return True


def kill_a_build_while_it_writes_the_cache(settings: DatabaseSettings) -> None:
    """`refinery build` killed (SIGKILL) while it writes the cache: nothing of it is kept."""
    with psycopg.connect(settings.conninfo()) as conn:
        before = actual_cache(conn)
        builds = conn.execute("select count(*) from refiner.refinery_builds").fetchone()[0]
    with psycopg.connect(settings.conninfo()) as holder:
        holder.execute("lock table refiner.refinement_cache in access exclusive mode")
        process = start_refinery(["build"], settings)
        wait_for_query(settings, '%"node_id": "model.refinery.refinement_cache"%', process)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
        holder.rollback()
    wait_idle(settings)
    with psycopg.connect(settings.conninfo()) as conn:
        assert actual_cache(conn) == before
        assert conn.execute("select count(*) from refiner.refinery_builds").fetchone()[0] == builds


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=3))
@example(  # every kind of change at least once, and two builds killed mid-way
    steps=[
        ([("edit", 1, ["A01"]), ("delete", 3), ("add", 4, 1, ["B02"])], True),
        ([("republish", 2, 0), ("deactivate", 5)], False),
        ([("release", 7), ("activate", 5)], True),
        ([("exclude", 1, 1, 0, ["A01"]), ("exclude", 6, 2, 3, [])], False),
        ([("deactivate", 5), ("activate", 5)], False),
    ]
)
def test_syncs_equal_recomputation_and_full_refresh(
    prepared: DatabaseSettings, steps: list[tuple[list[tuple], bool]]
) -> None:
    for operations, interrupted in steps:
        with psycopg.connect(prepared.conninfo()) as conn:
            before_rows = actual_cache(conn)
            before_expected = expected_cache(conn)
            before_configurations = configurations(conn)
            tes_changed = "tes" in {apply(conn, op) for op in operations}
            configurations_changed = configurations(conn) != before_configurations
            conn.commit()
        if interrupted and (tes_changed or configurations_changed):
            kill_a_build_while_it_writes_the_cache(prepared)
        plan = planned_build(prepared)
        expected_plan = TES if tes_changed else CONFIGURATIONS if configurations_changed else NOTHING
        assert plan == expected_plan, operations
        with psycopg.connect(prepared.conninfo()) as conn:
            expected = expected_cache(conn)
            after_rows = actual_cache(conn)
            after_payloads = payloads(conn)
        assert differences(expected, after_rows) == []
        refreshed_rows, refreshed_payloads = full_refresh_elsewhere(prepared)
        assert without_updated_at(refreshed_rows) == without_updated_at(after_rows)
        assert refreshed_payloads == after_payloads
        for key in after_rows.keys() & before_rows.keys():
            same = (
                before_expected[key].codes_by_system == expected[key].codes_by_system
                and before_expected[key].code_system_sets == expected[key].code_system_sets
            )
            if same:
                assert after_rows[key]["updated_at"] == before_rows[key]["updated_at"], key
            else:
                assert after_rows[key]["updated_at"] > before_rows[key]["updated_at"], key
