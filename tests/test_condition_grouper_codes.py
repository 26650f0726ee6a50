"""`condition_grouper_codes` and the documented "which conditions and jurisdictions keep code X".

The query in docs/analytics.md (the analytics mart, tes_condition_grouper_references and the
configurations mart) must answer exactly what the old containment query on the serving cache
answered (`aggregated_codes @> array[X]`), for every code the test data holds; the mart must hold
exactly the codes of tes_condition_groupers' arrays, one row each, and be read through its btree
index; refinement_cache has no GIN index any more.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from bench import lookups
from loaders.land.configurations import load_configurations
from loaders.land.tes import load_tes
from refinery import dbt
from refinery.connection import DatabaseSettings
from refinery.synthetic import SyntheticSpec, generate
from tests.conftest import create_database, drop_database
from tests.test_dbt_models import SERVING

SPEC = SyntheticSpec(seed=29, jurisdictions=3, conditions=20, configurations_per_jurisdiction=15)
SELECT = f"{SERVING} +condition_grouper_codes"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseSettings]:
    settings = create_database(server, "refinery_grouper_codes")
    summary = generate(tmp_path_factory.mktemp("synthetic"), SPEC)
    try:
        load_tes([summary.tes_dir], settings)
        load_configurations(summary.configurations_file, settings)
        outcome = dbt.run(["build", "--select", *SELECT.split()], settings)
        failures = [r["unique_id"] for r in dbt.run_results()["results"] if r["status"] in ("fail", "error")]
        assert outcome.exit_code == 0 and not failures, failures
        yield settings
    finally:
        drop_database(server, settings)


def test_documented_query_answers_like_the_containment_query(built: DatabaseSettings) -> None:
    query = lookups.code_query()
    with psycopg.connect(built.conninfo()) as conn:
        codes = [
            row[0]
            for row in conn.execute(
                """
                select code from refiner.refinement_cache cross join unnest(aggregated_codes) as code
                union
                select code from refiner.configurations
                cross join unnest(loinc_codes || snomed_codes || icd10_codes || rxnorm_codes) as code
                union
                select code from refiner.condition_grouper_codes
                union
                select 'NOT-A-CODE'
                """
            )
        ]
        added_only = conn.execute(
            """
            select count(*) from refiner.refinement_cache as cache
            where exists (
                select 1 from refiner.configurations as configurations
                where configurations.is_counted
                  and configurations.snomed_code = cache.snomed_code
                  and configurations.jurisdiction_id = cache.jurisdiction_id
                  and cardinality(configurations.loinc_codes || configurations.snomed_codes
                      || configurations.icd10_codes || configurations.rxnorm_codes) > 0
            )
            """
        ).fetchone()[0]
        assert len(codes) > 100 and added_only > 0  # the data exercises both paths
        mismatches = []
        found = 0
        for code in codes:
            expected = conn.execute(
                "select snomed_code, jurisdiction_id from refiner.refinement_cache"
                " where aggregated_codes @> array[%s]::text[] order by 1, 2",
                (code,),
            ).fetchall()
            actual = conn.execute(query, {"code": code}).fetchall()
            found += len(actual)
            if actual != expected:
                mismatches.append((code, expected, actual))
    assert not mismatches, mismatches[:3]
    assert found > len(codes)  # codes are kept by several (condition, jurisdiction) rows


def test_mart_holds_the_condition_groupers_codes_once_each(built: DatabaseSettings) -> None:
    with psycopg.connect(built.conninfo()) as conn:
        arrays = conn.execute(
            """
            select groupers.canonical_url, groupers.version, systems.key, codes.code
            from refiner.tes_condition_groupers as groupers
            cross join lateral jsonb_each(groupers.codes_by_system) as systems
            cross join lateral jsonb_array_elements_text(systems.value) as codes (code)
            """
        ).fetchall()
        rows = conn.execute(
            "select canonical_url, version, code_system, code from refiner.condition_grouper_codes"
        ).fetchall()
        cache_pairs = conn.execute(
            "select sum(cardinality(aggregated_codes)) from refiner.refinement_cache"
        ).fetchone()[0]
    assert rows and len(rows) == len(set(rows))
    assert sorted(rows) == sorted(arrays)
    assert len(rows) < cache_pairs  # grouper granularity: smaller than the per-jurisdiction arrays


def test_lookup_by_code_uses_a_btree_index_and_the_cache_has_no_gin(built: DatabaseSettings) -> None:
    with psycopg.connect(built.conninfo()) as conn:
        indexes = conn.execute(
            """
            select tablename, indexdef from pg_indexes
            where schemaname = 'refiner' and tablename in ('refinement_cache', 'condition_grouper_codes')
            """
        ).fetchall()
        code = conn.execute("select code from refiner.condition_grouper_codes limit 1").fetchone()[0]
        conn.execute("set enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "explain select canonical_url, version from refiner.condition_grouper_codes where code = %s",
                (code,),
            )
        )
    assert not [d for t, d in indexes if t == "refinement_cache" and "using gin" in d.lower()], indexes
    [btree] = [d for t, d in indexes if t == "condition_grouper_codes" and "(code, code_system)" in d]
    assert "using btree" in btree.lower()
    index_name = btree.split(" INDEX ")[1].split(" ON ")[0].strip('"')
    assert index_name in plan and "Index" in plan, plan


def test_bench_times_the_documented_query(built: DatabaseSettings) -> None:
    with psycopg.connect(built.conninfo()) as conn:
        codes = lookups.grouper_codes(conn)
        stats = lookups.measure_codes(conn, [*codes, "NOT-A-CODE"], count=200)
    assert stats.count == 200 and 0 < stats.p50_ms <= stats.p99_ms <= stats.max_ms
    assert stats.misses < 200  # most codes drawn are kept by some row; NOT-A-CODE by none
