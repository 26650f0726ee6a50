"""The benchmark harness: the trigger design behaves as documented (fed row by row or by COPY), the
commands suite times the operator's commands at a tiny scale and reports every figure with ratios
computed from what it measured, and the per-node suite writes well-formed results in which both
designs produced the same cache keys. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import commands, commands_report, lookups, project, report
from bench import trigger_design as td
from bench.tes_files import Grouper, focus_snomed, to_grouper
from refinery.connection import DatabaseSettings
from tests.conftest import REPO, create_database, drop_database, env_for

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


def test_copy_feed_gives_the_row_feeds_cache(server: DatabaseSettings) -> None:
    """COPY fires the same row triggers: the same inputs give the same cache, codes included,
    and a duplicate grouper is kept once as `on conflict do nothing` keeps it."""

    empty = {"loinc_codes": [], "snomed_codes": [], "icd10_codes": [], "rxnorm_codes": []}
    parent = Grouper("condition_grouper", PARENT[0], PARENT[1], "cg", None, empty, (CHILD_A, CHILD_B))
    first_a = _rs(CHILD_A, "111", ["1-1", "2-2"], [])
    groupers = [first_a, _rs(CHILD_B, "222", ["2-2", "3-3"], []), parent, _rs(CHILD_A, "111", ["6-6"], [])]
    configurations = [
        _config(1, CHILD_A, loinc=["9-9", "1-1"]),
        _config(2, CHILD_B, loinc=["4-4"]),
        _config(3, CHILD_A, loinc=["8-8"], updated="2025-03-01T00:00:00Z"),
    ]
    assert td.unique_groupers(groupers) == groupers[:3]
    caches = {}
    for feed, seed in td.FEEDS.items():
        settings = create_database(server, f"refinery_t_{feed}")
        try:
            with td.connect(settings.conninfo()) as conn:
                td.install(conn)
                timings = seed(conn, [("SDDH", "Senate District", "GC")], groupers, configurations)
                assert timings.counts["references"] == 2 and timings.counts["configurations"] == 3
                caches[feed] = td.cache_codes(conn)
        finally:
            drop_database(server, settings)
    assert caches["copy"] == caches["rows"]
    assert caches["copy"][("111", "SDDH")] == {"1-1", "2-2", "3-3", "111", "222", "8-8"}
    assert caches["copy"][("222", "SDDH")] == {"1-1", "2-2", "3-3", "111", "222", "4-4"}


def _command_run(first: float, noop: float, edit: float, release: float, copy: float) -> dict[str, float]:
    m = {
        "cmd.first_s": first,
        "cmd.noop_s": noop,
        "cmd.edit_one_s": edit,
        "cmd.new_release_s": release,
        "cmd.first.cache_node_s": first / 4,
        "trigger.copy_s": copy,
        "trigger.rows_s": copy * 1.2,
        "trigger.copy.configurations_s": copy / 2,
        "trigger.rows.configurations_s": copy / 1.5,
    }
    for name, (numerator, denominator) in commands.RATIOS.items():
        m[name] = m[numerator] / m[denominator]
    return m


def test_command_targets_take_the_median_of_same_run_ratios_per_scale() -> None:
    runs = [_command_run(20.0, 1.0, 6.0, 8.0, 10.0), _command_run(10.0, 2.0, 2.0, 4.0, 10.0)]
    runs.append(_command_run(30.0, 2.0, 3.0, 9.0, 25.0))
    result = {"scale": "production", "server": "postgres", "per_run": runs, "median": {}}
    evaluated = {e.name: e for e in commands_report.evaluate(result)}
    noop = evaluated["`refinery sync`, nothing changed / first load + build"]
    # per run 0.05, 0.2, 0.0667: the median of the ratios, not the ratio of the medians (0.1)
    assert noop.value == pytest.approx(2.0 / 30.0) and noop.status == "PASS"
    first = evaluated["first load + build / trigger design fed by COPY"]
    assert first.value == pytest.approx(1.2) and first.status == "PASS"
    edit = evaluated["one configuration edited, `refinery sync` / first load + build"]
    assert edit.value == pytest.approx(0.2) and edit.status == "PASS"
    large = {**result, "scale": "large"}
    statuses = {e.name: e.status for e in commands_report.evaluate(large)}
    # large sets 0.10 for the edit and 0.7 against the trigger design
    assert statuses[edit.name] == "MISS" and statuses[first.name] == "MISS"
    tiny = {**result, "scale": "tiny"}
    assert {e.status for e in commands_report.evaluate(tiny)} == {"n/a"}
    production = {**result, "median": {"cmd.noop_s": 2.0, "cmd.edit_one_s": 3.0}}
    grown = {**large, "median": {"cmd.noop_s": 2.5, "cmd.edit_one_s": 6.0}}
    growth = {e.name: e for e in commands_report.growth([production, grown], "postgres")}
    assert [g.status for g in growth.values()] == ["PASS", "MISS"]
    assert [g.value for g in growth.values()] == [pytest.approx(1.25), pytest.approx(2.0)]
    assert {e.status for e in commands_report.growth([production], "postgres")} == {"—"}


def test_targets_table_marks_each_target_met_or_missed_per_scale_and_server() -> None:
    environment = {"postgres": "15.20", "cpus": 2, "dbt": "1.11", "git_commit": None, "finished_at": "t"}

    def result(scale: str, server: str, runs: list[dict[str, float]]) -> dict[str, object]:
        return {
            "scale": scale,
            "server": server,
            "runs": len(runs),
            "per_run": runs,
            "median": commands.medians(runs),
            "environment": environment,
            "elapsed_s": 1.0,
        }

    results = [
        result("production", "postgres", [_command_run(20.0, 1.0, 6.0, 8.0, 10.0)]),
        result("large", "postgres", [_command_run(60.0, 3.0, 5.0, 20.0, 100.0)]),
        result("production", "embedded", [_command_run(20.0, 4.0, 4.0, 8.0, 10.0)]),
    ]
    table = commands_report.targets_table(results)
    noop, edit = commands_report.TARGETS[0].name, commands_report.TARGETS[1].name
    assert f"| production | {noop} | <= 0.1x | 0.050x — met | 0.20x — missed |" in table
    assert f"| production | {edit} | <= 0.25x | 0.30x — missed | 0.20x — met |" in table
    assert f"| large | {edit} | <= 0.1x | 0.083x — met | not measured |" in table
    growth_noop = commands_report.GROWTH[0][0]
    # postgres: 3.0 s / 1.0 s; embedded has no large run
    assert f"| large / production | {growth_noop} | <= 1.5x | 3.00x (3.00 s / 1.00 s) — missed |" in table
    assert "| needs production and large |" in table
    # columns by scale, then server
    assert "| figure | production, postgres | production, embedded | large, postgres |" in table
    assert "| first load + build | 20.00 s | 20.00 s | 60.00 s |" in table


def test_the_bench_builds_what_a_full_refinery_build_runs() -> None:
    """The per-node suite's `dbt build` is the planned full build's, written-rows check excluded."""
    from refinery import build_plan

    plan = build_plan.Plan(build_plan.ALL, "test", build_plan.Inputs("t", "c", "p"), None)
    assert plan.dbt_args == project.BUILD_ARGS
    assert f"tag:{build_plan.WRITTEN_ROWS_TAG}" in project.BUILD_ARGS


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
            "--suite",
            "nodes",
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
    assert (out / "nodes.md").read_text().count("### tiny") == 1
    assert (out / "cost_vs_scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "refinement_cache node" in done.stdout
    assert report.load_results(out)[0]["scale"] == "tiny"


@pytest.mark.slow
def test_tiny_command_run_reports_every_figure_with_ratios_from_its_measurements(
    server: DatabaseSettings, tmp_path: Path
) -> None:
    """The commands suite on PostgreSQL at the tiny scale: every command timed, sync driven the
    way the scheduled job runs it (each case did what it is named for), every figure and target
    in the tables, each ratio its run's own quotient, and --report-only rewrites the same tables."""
    out = tmp_path / "results"
    env = env_for(server)
    argv = ["--scale", "tiny", "--server", "postgres", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv, "--workdir", str(tmp_path / "work"), "--working-tree"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((out / "tiny-postgres.json").read_text())
    assert result["suite"] == "commands" and result["server"] == "postgres" and len(result["per_run"]) == 1
    run = result["per_run"][0]
    for _, metric in commands_report.FIGURES:
        assert run[metric] >= 0, metric
    for metric in ("cmd.first_s", "cmd.noop_s", "cmd.edit_one_s", "cmd.new_release_s", "trigger.copy_s"):
        assert run[metric] > 0, metric
    assert run["cmd.first_s"] == pytest.approx(
        run["cmd.first.load_tes_s"] + run["cmd.first.load_configurations_s"] + run["cmd.first.build_s"]
    )
    for name, (numerator, denominator) in commands.RATIOS.items():
        assert run[name] == pytest.approx(run[numerator] / run[denominator]), name
    assert run["cmd.db_init_s"] > 0
    checks = result["checks"][0]
    # nothing changed: the TES files are skipped by their sha256, the planned build starts no dbt
    assert checks["noop_steps"]["load_tes"] == "unchanged" and checks["noop_steps"]["build"] == "skipped"
    assert checks["noop_plan"] == "nothing" and checks["noop_models"] == []
    # one configuration edited: the configuration path only, no TES model, and the edit is served
    assert checks["edit_one_steps"]["load_tes"] == "unchanged" and checks["edit_one_plan"] == "configurations"
    assert "model.refinery.refinement_cache" in checks["edit_one_models"]
    assert not [m for m in checks["edit_one_models"] if ".stg_tes__" in m or ".tes_" in m]
    assert checks["edit_visible"] is True
    # a new release: loaded and built along the TES path
    assert checks["new_release_steps"]["load_tes"] == "ok" and checks["new_release_loaded"] > 0
    assert checks["new_release_plan"] == "tes"
    assert "model.refinery.stg_tes__valuesets" in checks["new_release_models"]
    assert checks["trigger_rows_cache_keys"] == checks["trigger_copy_cache_keys"] > 0

    table = (out / "tiny-postgres.md").read_text()
    readme = (out / "README.md").read_text()
    for label, _ in commands_report.FIGURES:
        assert f"| {label} |" in table and f"| {label} |" in readme, label
    for target in commands_report.TARGETS:
        ratio = commands_report.ratio_text(run[target.ratio])
        assert f"| {target.name} | {target.goal_text('tiny')} | {ratio} | n/a |" in table
        assert f"| {target.name} | {target.goal_text('tiny')} | {ratio} | n/a |" in readme
    assert "postgres (PostgreSQL 15" in readme and "[commands.md](commands.md)" in readme
    assert "build plans no-op/edit/release nothing/configurations/tes" in table
    assert (
        "no-op steps lock ok, fetch skipped, load_tes unchanged, load_configurations ok, build skipped"
        in table
    )
    targets = (out / "commands.md").read_text()
    # every target at both target scales and the growth rows, on both servers' columns
    for target in commands_report.TARGETS:
        for scale in commands_report.TARGET_SCALES:
            assert (
                f"| {scale} | {target.name} | {target.goal_text(scale)} | not measured | not measured |"
                in (targets)
            )
    for name, _, goal in commands_report.GROWTH:
        assert f"| large / production | {name} | <= {goal:g}x | needs production and large |" in targets
    assert f"| first load + build | {commands_report.seconds(run['cmd.first_s'])} |" in targets

    (out / "README.md").unlink()
    (out / "commands.md").unlink()
    (out / "tiny-postgres.md").unlink()
    again = subprocess.run(
        [sys.executable, "-m", "bench", "--report-only", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert (out / "README.md").read_text() == readme
    assert (out / "commands.md").read_text() == targets
    assert (out / "tiny-postgres.md").read_text() == table
