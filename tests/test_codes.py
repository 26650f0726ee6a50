"""Codes as today's Refiner uses them (issue 17), against real PostgreSQL.

- displays: tes_codes carries the display the real TES sample's COVID RS groupers publish;
- code exclusions: every form (bare, `key|code`, `url|code`) is loaded as given and applied
  (an exclusion beats an addition); bad entries refuse the file (exit 3, one line, nothing
  written); the warn-level tests report exclusions matching nothing and codes added and excluded;
- code_system_sets equals the oracle's independent recomputation (tests/cache_oracle.py);
- the var include_additional_context_codes: switching it either way and running an ordinary
  build gives the recomputation and the same rows as a --full-refresh.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loaders.land.configurations import SYSTEM_KEYS, load_configurations
from loaders.land.tes import load_tes
from refinery import cli, dbt
from refinery.connection import DatabaseSettings
from refinery.synthetic import SyntheticSpec, generate
from tests._land_helpers import TES, fingerprint, query
from tests.cache_oracle import (
    REPO,
    _displays,
    _excluded,
    _system_keys,
    actual_cache,
    differences,
    expected_cache,
)
from tests.conftest import SHARED_SAMPLE, create_database, drop_database
from tests.test_dbt_models import SERVING

SPEC = SyntheticSpec(seed=23, jurisdictions=3, conditions=15, configurations_per_jurisdiction=12)
COVID_SAMPLE = SHARED_SAMPLE / "rs-groupers-covid.json"


def var(include_additional_context: bool) -> str:
    return "{include_additional_context_codes: %s}" % ("true" if include_additional_context else "false")


def build(settings: DatabaseSettings, include_additional_context: bool, *extra: str) -> dict[str, tuple]:
    """dbt build of the cache and its tests; {test name: (status, failures)}."""
    outcome = dbt.run(
        ["build", "--select", *SERVING.split(), "--vars", var(include_additional_context), *extra],
        settings,
    )
    results = dbt.run_results()["results"]
    failures = [r["unique_id"] for r in results if r["status"] in ("fail", "error")]
    assert outcome.exit_code == 0 and not failures, failures
    return {
        r["unique_id"].split(".")[2]: (r["status"], r["failures"])
        for r in results
        if r["unique_id"].startswith("test.")
    }


def without_updated_at(table: dict) -> dict:
    return {key: {c: v for c, v in row.items() if c != "updated_at"} for key, row in table.items()}


def test_system_keys_are_the_seeds_short_names() -> None:
    """The loader's short keys for `key|code` are exactly the code_systems seed's short names."""
    with (REPO / "seeds" / "code_systems.csv").open() as handle:
        assert {row["short_name"] for row in csv.DictReader(handle)} == SYSTEM_KEYS


def record(id_: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "jurisdiction_id": "CA",
        "child_grouper_url": f"{TES}/rs-grouper-840539006",
        "child_grouper_version": "20250328",
        **fields,
    }


def test_every_exclusion_form_is_loaded_as_given(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    as_json = tmp_path / "configurations.json"
    entries = ["94500-6", "loinc|94501-4", "http://loinc.org|94502-2", " snomed | 840539006 "]
    as_json.write_text(json.dumps([record(1, excluded_codes=entries)]), encoding="utf-8")
    load_configurations(as_json, fresh_database)
    assert query(fresh_database, "select excluded_codes from raw.configurations") == [
        (["94500-6", "loinc|94501-4", "http://loinc.org|94502-2", "snomed|840539006"],)
    ]
    as_csv = tmp_path / "configurations.csv"
    as_csv.write_text(
        "id,jurisdiction_id,child_grouper_url,child_grouper_version,excluded_codes\n"
        f"1,CA,{TES}/rs-grouper-840539006,20250328,94500-6;loinc|94501-4\n"
        f'2,CA,{TES}/rs-grouper-840539006,20250328,"[""http://loinc.org|94502-2"", ""A01""]"\n'
        f"3,CA,{TES}/rs-grouper-840539006,20250328,\n",
        encoding="utf-8",
    )
    load_configurations(as_csv, fresh_database)
    assert query(fresh_database, "select id, excluded_codes from raw.configurations order by id") == [
        (1, ["94500-6", "loinc|94501-4"]),
        (2, ["http://loinc.org|94502-2", "A01"]),
        (3, []),
    ]


BAD_EXCLUSIONS = {
    "empty entry": (["94500-6", "  "], "excluded_codes[1] is empty"),
    "not a string": ([94500], "excluded_codes[0] must be a string"),
    "unknown system key": (["lonic|94500-6"], "unknown system key 'lonic'"),
    "system without code": (["loinc|"], "needs both parts"),
    "not a list": ("94500-6", "excluded_codes must be a list of strings"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXCLUSIONS))
def test_bad_exclusions_refuse_the_file(
    case: str,
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    use_database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entries, message = BAD_EXCLUSIONS[case]
    use_database(fresh_database)
    good = tmp_path / "good.json"
    good.write_text(json.dumps([record(1, excluded_codes=["A01"])]), encoding="utf-8")
    load_configurations(good, fresh_database)
    before = fingerprint(fresh_database)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([record(1), record(7, excluded_codes=entries)]), encoding="utf-8")

    code = cli.main(["load", "configurations", str(bad)])

    err = capsys.readouterr().err.strip()
    assert code == 3
    assert len(err.splitlines()) == 1, err
    assert str(bad) in err and "record 1 (id 7)" in err and message in err, err
    assert fingerprint(fresh_database) == before


@pytest.mark.skipif(not COVID_SAMPLE.exists(), reason="no shared TES sample")
def test_real_sample_displays(server: DatabaseSettings) -> None:
    """tes_codes gives each code of the real COVID RS groupers the display they publish."""
    settings = create_database(server, "refinery_displays")
    try:
        load_tes([COVID_SAMPLE], settings)
        assert (
            dbt.run(
                ["build", "--select", "+tes_codes", "--indirect-selection", "cautious"], settings
            ).exit_code
            == 0
        )
        keys = _system_keys()
        published: dict[tuple[str, str], set[str]] = {}
        for resource in json.loads(COVID_SAMPLE.read_text(encoding="utf-8")):
            for code_key, display in _displays(resource, keys).items():
                published.setdefault(code_key, set()).add(display)
        with psycopg.connect(settings.conninfo()) as conn:
            rows = {
                (system, code): display
                for system, code, display in conn.execute(
                    "select code_system, code, display from refiner.tes_codes"
                )
            }
            covid_loinc = conn.execute(
                "select count(*) from refiner.tes_codes where code_system = 'loinc' and display <> ''"
            ).fetchone()[0]
    finally:
        drop_database(server, settings)
    assert published and published.keys() <= rows.keys()
    for code_key, displays in published.items():
        assert rows[code_key] in displays, (code_key, rows[code_key], displays)
    # codes no ValueSet gives a display carry ""
    assert all(display == "" for code_key, display in rows.items() if code_key not in published)
    assert covid_loinc > 100
    assert rows[("snomed", "840539006")] != ""


@pytest.fixture(scope="module")
def excluded(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Synthetic data built once, then exclusions of every form planted on counted
    configurations and built again (incrementally)."""
    settings = create_database(server, "refinery_codes")
    summary = generate(tmp_path_factory.mktemp("synthetic"), SPEC)
    load_tes([summary.tes_dir], settings)
    load_configurations(summary.configurations_file, settings)
    try:
        build(settings, False)
        with psycopg.connect(settings.conninfo()) as conn:
            first = actual_cache(conn)
            assert differences(expected_cache(conn), first) == []
            plan = []
            for (snomed, jurisdiction), row in sorted(first.items())[:4]:
                loinc = sorted(row["codes_by_system"].get("loinc", []))
                plan.append((int(row["source_details"]["configuration_id"]), loinc, (snomed, jurisdiction)))
            assert len(plan) == 4 and all(len(loinc) >= 2 for _, loinc, _ in plan)
            (bare_id, bare, _), (key_id, keyed, _), (url_id, by_url, _), (both_id, _, _) = plan
            exclusions = {
                bare_id: [bare[0]],
                key_id: [f"loinc|{keyed[0]}", "loinc|NOT-A-CODE-1"],
                url_id: [f"http://loinc.org|{by_url[0]}", f"http://loinc.org|{by_url[1]}"],
                both_id: ["ADDED-AND-EXCLUDED", "snomed|ADDED-2"],
            }
            for config_id, entries in exclusions.items():
                conn.execute(
                    "update raw.configurations set excluded_codes = %s, "
                    "updated_at = updated_at + interval '1 day' where id = %s",
                    (entries, config_id),
                )
            conn.execute(
                "update raw.configurations set loinc_codes = array['ADDED-AND-EXCLUDED', 'ADDED-1'], "
                "snomed_codes = array['ADDED-2'], updated_at = updated_at + interval '1 day' where id = %s",
                (both_id,),
            )
        tests = build(settings, False)
        with psycopg.connect(settings.conninfo()) as conn:
            after = actual_cache(conn)
            expected = expected_cache(conn)
        yield {
            "settings": settings,
            "first": first,
            "after": after,
            "expected": expected,
            "plan": plan,
            "tests": tests,
        }
    finally:
        drop_database(server, settings)


def test_exclusions_applied_and_equal_to_recomputation(excluded: dict) -> None:
    assert differences(excluded["expected"], excluded["after"]) == []
    (_, bare, bare_key), (_, keyed, key_key), (_, by_url, url_key), (_, _, both_key) = excluded["plan"]
    after, first = excluded["after"], excluded["first"]

    def loinc(key):
        return set(after[key]["codes_by_system"].get("loinc", []))

    def set_codes(key, set_key):
        return {entry["code"] for entry in after[key]["code_system_sets"][set_key]}

    assert bare[0] not in loinc(bare_key) and bare[0] not in after[bare_key]["aggregated_codes"]
    assert set(bare[1:]) <= loinc(bare_key) and bare[0] not in set_codes(bare_key, "loinc")
    assert keyed[0] not in loinc(key_key) and set(keyed[1:]) <= loinc(key_key)
    assert not ({by_url[0], by_url[1]} & loinc(url_key)) and set(by_url[2:]) <= loinc(url_key)
    # an exclusion beats an addition; the addition not excluded is kept
    assert "ADDED-AND-EXCLUDED" not in after[both_key]["aggregated_codes"]
    assert "ADDED-2" not in set_codes(both_key, "snomed") and "ADDED-1" in loinc(both_key)
    assert {"code": "ADDED-1", "display": "", "system": "2.16.840.1.113883.6.1"} in after[both_key][
        "code_system_sets"
    ]["loinc"]
    untouched = first.keys() - {bare_key, key_key, url_key, both_key}
    assert untouched and all(after[k]["updated_at"] == first[k]["updated_at"] for k in untouched)


def test_warn_tests_report_exclusions(excluded: dict) -> None:
    tests = excluded["tests"]
    assert tests["warn_exclusions_matching_nothing"] == ("warn", 1)  # loinc|NOT-A-CODE-1
    # one row per (configuration, system, added code) an exclusion removes: ADDED-AND-EXCLUDED,
    # snomed|ADDED-2, and any added code the planted exclusions of other rows happen to hit
    keys = _system_keys()
    both = 0
    for excluded_codes, *added in query(
        excluded["settings"],
        "select excluded_codes, loinc_codes, snomed_codes, icd10_codes, rxnorm_codes "
        "from raw.configurations where cardinality(excluded_codes) > 0",
    ):
        bare, pairs = _excluded(excluded_codes, keys)
        for system, codes in zip(("loinc", "snomed", "icd10", "rxnorm"), added, strict=True):
            both += sum(1 for code in codes or [] if code in bare or (system, code) in pairs)
    assert both >= 2
    assert tests["warn_codes_added_and_excluded"] == ("warn", both)
    assert tests["assert_code_exclusions_applied"][0] == "pass"
    assert tests["assert_code_system_sets_agree"][0] == "pass"


def test_switching_the_var_both_ways_equals_a_full_refresh(excluded: dict) -> None:
    """Off -> on -> off with ordinary builds: each equals the recomputation with that var and a
    --full-refresh with it; rows the var does not touch keep their updated_at."""
    settings = excluded["settings"]
    off = excluded["after"]
    build(settings, True)
    with psycopg.connect(settings.conninfo()) as conn:
        on = actual_cache(conn)
        assert differences(expected_cache(conn, include_additional_context=True), on) == []
    changed = {k for k in on if on[k]["codes_by_system"] != off[k]["codes_by_system"]}
    assert changed, "the synthetic data's additional context groupers changed no row"
    assert all(set(off[k]["aggregated_codes"]) < set(on[k]["aggregated_codes"]) for k in changed)
    assert all(on[k]["updated_at"] == off[k]["updated_at"] for k in on.keys() - changed)
    build(settings, True, "--full-refresh")
    with psycopg.connect(settings.conninfo()) as conn:
        assert without_updated_at(actual_cache(conn)) == without_updated_at(on)

    build(settings, False)
    with psycopg.connect(settings.conninfo()) as conn:
        back = actual_cache(conn)
        assert differences(expected_cache(conn), back) == []
    assert without_updated_at(back) == without_updated_at(off)
    build(settings, False, "--full-refresh")
    with psycopg.connect(settings.conninfo()) as conn:
        assert without_updated_at(actual_cache(conn)) == without_updated_at(off)


TAMPERINGS = {
    "display changed": "jsonb_set(code_system_sets, '{loinc,0,display}', '\"tampered\"')",
    "entry dropped": "code_system_sets #- '{loinc,0}'",
    "entry repeated": "jsonb_set(code_system_sets, '{loinc}', "
    "(code_system_sets -> 'loinc') || jsonb_build_array(code_system_sets -> 'loinc' -> 0))",
    "entry repeated in place of another": (
        "jsonb_set(code_system_sets, '{loinc,1}', code_system_sets -> 'loinc' -> 0)"
    ),
    "key removed": "code_system_sets - 'cvx'",
    "key not a list": "jsonb_set(code_system_sets, '{cvx}', '{}')",
    "entry with an extra field": "jsonb_set(code_system_sets, '{loinc,0,extra}', '1')",
}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_the_code_system_sets_checks_catch_a_tampered_row(excluded: dict, tampering: str) -> None:
    """Both checks (the whole cache; the rows the latest write wrote) name the one
    row whose code_system_sets no longer matches its codes_by_system, whatever the tampering."""
    settings = excluded["settings"]
    with psycopg.connect(settings.conninfo()) as conn:
        snomed, jurisdiction, original = conn.execute(
            "select c.snomed_code, c.jurisdiction_id, c.code_system_sets::text"
            " from refiner.refinement_cache as c"
            " where jsonb_array_length(c.code_system_sets -> 'loinc') >= 2"
            " and c.written_at = (select max(synced_at) from refiner.refinement_cache__synced_partitions)"
            " order by 1, 2 limit 1"
        ).fetchone()
        key = (snomed, jurisdiction)
        conn.execute(
            f"update refiner.refinement_cache set code_system_sets = {TAMPERINGS[tampering]}"
            " where snomed_code = %s and jurisdiction_id = %s",
            key,
        )
    try:
        outcome = dbt.run(
            [
                "test",
                "--select",
                "assert_code_system_sets_agree",
                "assert_code_system_sets_written_rows_agree",
            ],
            settings,
        )
        results = {
            r["unique_id"].split(".")[2]: (r["status"], r["failures"])
            for r in dbt.run_results()["results"]
            if r["unique_id"].startswith("test.")
        }
    finally:
        with psycopg.connect(settings.conninfo()) as conn:
            conn.execute(
                "update refiner.refinement_cache set code_system_sets = %s::jsonb"
                " where snomed_code = %s and jurisdiction_id = %s",
                (original, *key),
            )
    assert outcome.exit_code == 1
    assert results == {
        "assert_code_system_sets_agree": ("fail", 1),
        "assert_code_system_sets_written_rows_agree": ("fail", 1),
    }
