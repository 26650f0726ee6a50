"""Property (codes): after any sequence of changes, an incremental build of refinement_cache equals a
recomputation from scratch, and rows whose content did not change keep their updated_at.

Changes: configurations added (sometimes onto an existing key: tie-breaking), edited,
deactivated, re-activated, deleted, given code exclusions (bare, `key|code`, `url|code`; of codes
their grouper lists or they add); RS groupers re-published with other codes; the dbt var
include_additional_context_codes switched. After each step: `dbt run --select +refinement_cache`
(incremental, with that step's var), then compare with the Python oracle (code_system_sets
included); at the end of every example a --full-refresh build must give the same rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaders.land.configurations import load_configurations
from loaders.land.tes import load_tes
from refinery import dbt
from refinery.connection import DatabaseSettings
from refinery.synthetic import SyntheticSpec, generate
from tests.cache_oracle import actual_cache, differences, expected_cache
from tests.conftest import create_database, drop_database

SPEC = SyntheticSpec(seed=5, jurisdictions=3, conditions=12, configurations_per_jurisdiction=10)
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
    st.tuples(st.just("exclude"), st.integers(0, 10_000), st.integers(0, 2), st.integers(0, 50), CODES),
)
SHORT_KEYS = {
    "http://loinc.org": "loinc",
    "http://snomed.info/sct": "snomed",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd10",
}
# the var the table was last built with (the module's database outlives each example)
STATE = {"include_additional_context": False}


def run_cache(
    settings: DatabaseSettings, *extra: str, include_additional_context: bool | None = None
) -> None:
    flag = (
        STATE["include_additional_context"]
        if include_additional_context is None
        else include_additional_context
    )
    var = "{include_additional_context_codes: %s}" % ("true" if flag else "false")
    outcome = dbt.run(["run", "--select", "+refinement_cache", "--vars", var, *extra], settings)
    assert outcome.exit_code == 0
    STATE["include_additional_context"] = flag


@pytest.fixture(scope="module")
def prepared(
    server: DatabaseSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DatabaseSettings]:
    db = create_database(server, "refinery_property_codes")
    summary = generate(tmp_path_factory.mktemp("synthetic"), SPEC)
    load_tes([summary.tes_dir], db)
    load_configurations(summary.configurations_file, db)
    outcome = dbt.run(["seed"], db)
    assert outcome.exit_code == 0
    run_cache(db, include_additional_context=False)
    try:
        yield db
    finally:
        drop_database(server, db)


def apply(conn: psycopg.Connection, op: tuple) -> None:
    ids = [row[0] for row in conn.execute("select id from raw.configurations order by id")]
    kind = op[0]
    if kind in ("edit", "deactivate", "activate", "delete") and ids:
        target = ids[op[1] % len(ids)]
        if kind == "edit":
            conn.execute(
                "update raw.configurations set loinc_codes = %s, "
                "updated_at = updated_at + interval '1 hour' where id = %s",
                (op[2], target),
            )
        elif kind == "deactivate":
            conn.execute("update raw.configurations set is_active = false where id = %s", (target,))
        elif kind == "activate":
            conn.execute("update raw.configurations set is_active = true where id = %s", (target,))
        else:
            conn.execute("delete from raw.configurations where id = %s", (target,))
    elif kind == "add":
        template = conn.execute(
            "select jurisdiction_id, child_grouper_url, child_grouper_version, "
            "updated_at, load_id from raw.configurations order by id "
            "offset %s limit 1",
            (op[1] % max(len(ids), 1),),
        ).fetchone()
        if template:
            jurisdiction, url, version, updated_at, load_id = template
            new_id = (max(ids) if ids else 0) + 1
            conn.execute(
                "insert into raw.configurations (id, jurisdiction_id, child_grouper_url, "
                "child_grouper_version, snomed_codes, is_active, updated_at, load_id) "
                "values (%s, %s, %s, %s, %s, true, %s, %s)",
                (new_id, jurisdiction, url, version, op[3], updated_at + timedelta(hours=op[2]), load_id),
            )
    elif kind == "exclude" and ids:
        # one code the configuration's RS grouper lists, in the form op[2] picks (bare, short
        # key, system URL), and the codes of op[4] as bare exclusions (some are added codes:
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
        conn.execute(
            "update raw.configurations set excluded_codes = %s, "
            "updated_at = updated_at + interval '1 hour' where id = %s",
            (entries, target),
        )
    elif kind == "republish":
        rows = conn.execute(
            "select distinct on (canonical_url, version) resource from raw.tes_valuesets "
            "where canonical_url like '%%rs-grouper-%%' "
            "order by canonical_url, version, last_seen_load_id desc"
        ).fetchall()
        resource = rows[op[1] % len(rows)][0]
        includes = resource["compose"]["include"]
        if op[2] == 0 and includes:
            includes[0]["concept"] = includes[0]["concept"][1:]  # drop a code
        else:
            includes.append(
                {"system": "http://loinc.org", "concept": [{"code": f"REPUB-{op[1] % 97}-{op[2]}"}]}
            )
        text = json.dumps(resource, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        seen = conn.execute(
            "select 1 from raw.tes_valuesets where canonical_url = %s and version = %s "
            "and resource_sha256 = %s",
            (resource["url"], resource["version"], digest),
        ).fetchone()
        if seen:
            return
        load_id = conn.execute(
            "insert into raw.loads (kind, status, finished_at) values "
            "('tes', 'succeeded', now()) returning load_id"
        ).fetchone()[0]
        conn.execute(
            "insert into raw.tes_valuesets (canonical_url, version, resource, resource_sha256, "
            "source_file, load_id, last_seen_load_id, loaded_at) "
            "values (%s, %s, %s::jsonb, %s, 'property', %s, %s, now())",
            (resource["url"], resource["version"], text, digest, load_id, load_id),
        )


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.lists(operation, min_size=0, max_size=4), st.booleans()), min_size=1, max_size=2
    )
)
def test_incremental_with_exclusions_and_the_var_equals_recomputation(
    prepared: DatabaseSettings, steps: list[tuple[list[tuple], bool]]
) -> None:
    for step, include_additional_context in steps:
        with psycopg.connect(prepared.conninfo()) as conn:
            before_rows = actual_cache(conn)
            before_expected = expected_cache(
                conn, include_additional_context=STATE["include_additional_context"]
            )
            for op in step:
                apply(conn, op)
            conn.commit()
        run_cache(prepared, include_additional_context=include_additional_context)
        with psycopg.connect(prepared.conninfo()) as conn:
            expected = expected_cache(conn, include_additional_context=include_additional_context)
            after_rows = actual_cache(conn)
        assert differences(expected, after_rows) == []
        for key in after_rows.keys() & before_rows.keys():
            same = (
                before_expected[key].codes_by_system == expected[key].codes_by_system
                and before_expected[key].code_system_sets == expected[key].code_system_sets
            )
            if same:
                assert after_rows[key]["updated_at"] == before_rows[key]["updated_at"], key
            else:
                assert after_rows[key]["updated_at"] > before_rows[key]["updated_at"], key
    run_cache(prepared, "--full-refresh")
    with psycopg.connect(prepared.conninfo()) as conn:
        refreshed = actual_cache(conn)
    assert {k: {c: v for c, v in r.items() if c != "updated_at"} for k, r in refreshed.items()} == {
        k: {c: v for c, v in r.items() if c != "updated_at"} for k, r in after_rows.items()
    }
