"""The benchmark harness: the trigger design behaves as documented, and a tiny end-to-end run writes
well-formed results in which both designs produced the same cache keys. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import lookups, project, report
from bench import trigger_design as td
from bench.tes_files import Grouper, focus_snomed, to_grouper
from refinery.connection import DatabaseSettings
from tests.conftest import REPO, env_for

PARENT = ("https://example.org/ValueSet/cg-1", "1.0.0")
CHILD_A = ("https://example.org/ValueSet/rs-grouper-111", "20250101")
CHILD_B = ("https://example.org/ValueSet/rs-grouper-222", "20250101")


def _rs(key: tuple[str, str], snomed: str, loinc: list[str], cvx: list[str]) -> Grouper:
    codes = {"loinc_codes": loinc, "snomed_codes": [snomed], "icd10_codes": [], "rxnorm_codes": []}
    return Grouper("reporting_spec_grouper", key[0], key[1], "rs", snomed, codes, ())


def _config(
    ident: int,
    child: tuple[str, str],
    *,
    active: bool = True,
    loinc: list[str] | None = None,
    updated: str = "2025-02-01T00:00:00Z",
) -> dict[str, object]:
    return {
        "id": ident,
        "jurisdiction_id": "SDDH",
        "child_grouper_url": child[0],
        "child_grouper_version": child[1],
        "loinc_codes": loinc or [],
        "is_active": active,
        "updated_at": updated,
    }


def test_trigger_design_reaggregates_parents_and_upserts_cache(fresh_database: DatabaseSettings) -> None:
    empty = {"loinc_codes": [], "snomed_codes": [], "icd10_codes": [], "rxnorm_codes": []}
    parent = Grouper("condition_grouper", PARENT[0], PARENT[1], "cg", None, empty, (CHILD_A, CHILD_B))
    groupers = [_rs(CHILD_A, "111", ["1-1", "2-2"], []), _rs(CHILD_B, "222", ["2-2", "3-3"], []), parent]
    configurations = [
        _config(1, CHILD_A, loinc=["9-9", "1-1"]),
        _config(2, CHILD_B, active=False),
        _config(3, CHILD_A, loinc=["8-8"], updated="2025-03-01T00:00:00Z"),  # later: wins the key
    ]
    with td.connect(fresh_database.conninfo()) as conn:
        td.install(conn)
        timings = td.seed(conn, [("SDDH", "Senate District", "GC")], groupers, configurations)
        assert timings.counts["references"] == 2
        # every reference insert re-aggregated the parent from all of its children
        loinc = conn.execute(
            "select loinc_codes from tes_condition_groupers where canonical_url = %s", (PARENT[0],)
        ).fetchone()[0]
        assert sorted(loinc) == ["1-1", "2-2", "3-3"]
        codes = td.cache_codes(conn)
        # the inactive configuration of 222 made no row; the latest configuration of 111 won
        assert set(codes) == {("111", "SDDH")}
        assert codes[("111", "SDDH")] == {"1-1", "2-2", "3-3", "111", "222", "8-8"}
        # an edit is one UPDATE, and its trigger rewrites the row
        td.update_configurations(conn, [{**configurations[2], "loinc_codes": ["7-7"]}])
        assert "7-7" in td.cache_codes(conn)[("111", "SDDH")]


def test_focus_snomed_comes_from_use_context_not_the_resource_id() -> None:
    valueset = {
        "resourceType": "ValueSet",
        "id": "2316",
        "url": "https://x/ValueSet/rs-grouper-840539006",
        "version": "1",
        "meta": {
            "profile": [
                "http://aphl.org/fhir/vsm/StructureDefinition/vsm-reportingspecificationgroupervalueset"
            ]
        },
        "useContext": [
            {
                "code": {"code": "focus"},
                "valueCodeableConcept": {
                    "coding": [{"system": "http://snomed.info/sct", "code": "840539006"}]
                },
            }
        ],
        "compose": {
            "include": [
                {"system": "http://hl7.org/fhir/sid/cvx", "concept": [{"code": "207"}]},
                {"system": "http://loinc.org", "concept": [{"code": "94500-6"}]},
            ]
        },
    }
    grouper = to_grouper(valueset)
    assert grouper is not None and grouper.snomed_code == "840539006"
    # only the original's four systems are kept: the CVX code is dropped, as it was
    assert grouper.codes["loinc_codes"] == ["94500-6"]
    assert sum(len(v) for v in grouper.codes.values()) == 1
    del valueset["useContext"]
    assert focus_snomed(valueset) == "840539006"


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert lookups.percentile(samples, 0.99) == 99.0
    assert lookups.percentile(samples, 0.5) == 50.0
    with pytest.raises(ValueError):
        lookups.percentile([], 0.5)


def test_required_parts_add_up_and_older_results_keep_their_table() -> None:
    m = {
        "trigger.groupers_s": 1.0,
        "trigger.references_s": 1.0,
        "trigger.configurations_s": 8.0,
        "trigger.total_s": 10.0,
        "trigger.noop_s": 0.0,
        "trigger.edit_one_s": 0.01,
        "trigger.edit_1pct_s": 0.1,
        "trigger.republish_s": 0.1,
        "trigger.new_release_s": 1.0,
        "project.load_tes_s": 0.5,
        "project.load_configurations_s": 0.5,
        "project.build_wall_s": 12.0,
        "project.total_s": 13.0,
        "project.cache_node_full_s": 4.0,
        "project.cache_node_rebuild_s": 4.0,
        "project.noop_node_s": 0.04,
        "project.edit_one_node_s": 0.05,
        "project.edit_1pct_node_s": 0.1,
        "project.republish_node_s": 0.2,
        "project.new_release_node_s": 0.04,
        "project.new_release_load_s": 0.1,
    }
    older = report._rows(m)
    assert report.required_parts_s(m) is None
    assert not any(label.startswith("… load + parse") for label, _, _ in older)
    m |= {"project.parse_s": 3.0, "project.gin_index_s": 2.0, "project.recomputation_test_s": 2.5}
    assert report.required_parts_s(m) == pytest.approx(8.5)
    rows = {label: (theirs, ours) for label, theirs, ours in report._rows(m)}
    assert rows["… load + parse + GIN index + recomputation test alone"] == (10.0, pytest.approx(8.5))
    assert len(rows) == len(older) + 4
    ratios = report.same_run_ratios([m])
    assert ratios["gin_index"] == pytest.approx(0.25) and ratios["required_parts"] == pytest.approx(0.85)
    m |= {"project.build_before_cache_s": 7.0, "project.build_after_cache_s": 2.5}
    rows = {label: (theirs, ours) for label, theirs, ours in report._rows(m)}
    after = "… of which the build's nodes after the refinement_cache node ends (its tests)"
    assert rows[after] == (None, 2.5)
    assert len(rows) == len(older) + 6


def test_a_build_is_split_at_the_cache_node_by_when_its_nodes_ran() -> None:
    """run_results' timings (compile start to execute end) place each node; the build's node
    span is split at the cache node: before it starts, and after it ends."""

    def node(unique_id: str, start: float, end: float) -> dict[str, object]:
        stamp = "2026-11-23T07:00:{:09.6f}Z".format
        return {
            "unique_id": unique_id,
            "timing": [
                {"name": "compile", "started_at": stamp(start), "completed_at": stamp(start + 0.01)},
                {"name": "execute", "started_at": stamp(start + 0.01), "completed_at": stamp(end)},
            ],
        }

    results = [
        node("model.refinery.stg", 1.0, 2.0),
        node("test.refinery.not_null_stg", 2.0, 3.5),
        node("model.refinery.refinement_cache", 3.5, 7.5),
        node("test.refinery.assert_refinement_cache_matches_recomputation", 7.5, 10.0),
        {"unique_id": "exposure.refinery.app", "timing": []},
    ]
    timing = project.DbtTiming(["build"], 11.0)
    for item in results:  # as project.dbt reads run_results.json
        timing.nodes[str(item["unique_id"])] = 0.0
        span = project._span(item["timing"])
        if span is not None:
            timing.spans[str(item["unique_id"])] = span
    assert "exposure.refinery.app" not in timing.spans
    assert timing.around_node("refinement_cache", "model") == (pytest.approx(2.5), pytest.approx(2.5))
    assert timing.around_node("refinement_cache", "test") is None
    assert timing.around_node("app", "exposure") is None  # ran, but without timings


@pytest.mark.slow
def test_tiny_run_writes_results_with_equal_cache_keys(server: DatabaseSettings, tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = env_for(server)
    env["DBT_TARGET_PATH"] = str(tmp_path / "target")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--scale",
            "tiny",
            "--runs",
            "1",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            "--lookups",
            "300",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((out / "tiny.json").read_text())
    assert result["scale"] == "tiny" and result["runs"] == 1 and len(result["per_run"]) == 1
    for name in (
        "trigger.references_s",
        "trigger.configurations_s",
        "trigger.total_s",
        "project.total_s",
        "project.cache_node_full_s",
        "project.cache_node_rebuild_s",
        "project.noop_node_s",
        "project.edit_one_node_s",
        "project.edit_1pct_node_s",
        "project.new_release_node_s",
        "loader.mb_per_s",
        "lookup.project_p50_ms",
        "lookup.project_p99_ms",
    ):
        assert result["median"][name] >= 0, name
    # what other issues' requirements cost on their own: each was measured (the recomputation
    # test was found among the build's nodes), and the floor row adds them up
    for name in (
        "project.gin_index_s",
        "project.parse_s",
        "project.recomputation_test_s",
        "project.noop_fingerprint_node_s",
        "project.edit_one_fingerprint_node_s",
        "project.build_before_cache_s",
        "project.build_after_cache_s",
    ):
        assert result["median"][name] > 0, name
    checks = result["checks"][0]
    assert checks["cache_rows"]["project"] > 0
    assert checks["same_cache_keys"] is True, checks
    assert checks["same_cache_keys_after_incremental"] is True, checks
    assert checks["edit_visible"] is True
    assert checks["lookup_misses"] == 0
    statuses = {t["name"]: t["status"] for t in result["targets"]}
    assert set(statuses.values()) <= {"PASS", "MISS", "n/a"}
    assert statuses["both designs produce the same cache keys"] == "PASS"

    table = (out / "tiny.md").read_text()
    assert "| measurement | trigger design | this project | ratio of the medians |" in table
    assert "| target | goal | measured | status |" in table
    assert "| … load + parse + GIN index + recomputation test alone |" in table
    assert "| … of which the build's nodes before the refinement_cache node starts" in table
    assert table.count("| … and upstream, int_cache_inputs_fingerprinted") == 2
    assert (out / "README.md").read_text().count("### tiny") == 1
    assert (out / "cost_vs_scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "refinement_cache node" in done.stdout
    assert report.load_results(out)[0]["scale"] == "tiny"
