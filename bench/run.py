"""One benchmark scale: N runs, each in its own fresh database, both designs side by side."""

from __future__ import annotations

import math
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import data, lookups, project, tes_files
from bench import trigger_design as td
from bench.data import Dataset
from refinery import connection, dbinit
from refinery.connection import DatabaseSettings
from refinery.environ import scoped_environ
from refinery.synthetic import UNKNOWN_JURISDICTION

Log = Any  # a callable taking one str


@dataclass
class RunOutcome:
    metrics: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    slowest_nodes: list[tuple[str, float]] = field(default_factory=list)


def server_settings() -> DatabaseSettings:
    """The server to benchmark on: DATABASE_URL / PG variables, else the local 127.0.0.1:5432."""
    configured = connection.configured()
    if configured is not None:
        return configured.with_database("postgres")
    return DatabaseSettings(
        host="127.0.0.1", port=5432, user="postgres", password=None, dbname="postgres", source="local server"
    )


@contextmanager
def fresh_database(admin: DatabaseSettings, scale: str, keep: bool = False) -> Iterator[DatabaseSettings]:
    name = f"bench_{scale}_{uuid.uuid4().hex[:8]}"
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    settings = admin.with_database(name)
    try:
        dbinit.init(settings)
        yield settings
    finally:
        if not keep:
            with connection.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@contextmanager
def dbt_paths(folder: Path, project_dir: Path) -> Iterator[None]:
    """Point dbt's target/ and logs/ at the bench's own folder, and the project at its snapshot."""
    with scoped_environ(
        {
            "REFINERY_PROJECT_DIR": str(project_dir),
            "DBT_TARGET_PATH": str(folder / "target"),
            "DBT_LOG_PATH": str(folder / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
    ):
        yield


def _codes_agreement(
    trigger: dict[tuple[str, str], set[str]], ours: dict[tuple[str, str], set[str]]
) -> float:
    """Share of common keys whose trigger-design codes (4 systems, one parent) are all in ours."""
    common = trigger.keys() & ours.keys()
    if not common:
        return 0.0
    return sum(1 for key in common if trigger[key] <= ours[key]) / len(common)


def run_once(
    dataset: Dataset,
    admin: DatabaseSettings,
    workdir: Path,
    index: int,
    *,
    lookup_count: int,
    keep: bool,
    log: Log,
) -> RunOutcome:
    out = RunOutcome()
    m = out.metrics
    with fresh_database(admin, dataset.scale, keep) as settings:
        log(f"run {index + 1}: database {settings.dbname}")
        # --- 1. the trigger design, seeded row by row --------------------------------------------
        started = time.perf_counter()
        groupers = tes_files.read_groupers([dataset.tes_dir])
        configurations = data.load_configurations(dataset.configurations_file)
        m["trigger.parse_s"] = time.perf_counter() - started
        conn = td.connect(settings.conninfo())
        try:
            td.install(conn)
            seeded = td.seed(conn, project.jurisdictions(), groupers, configurations)
            m["trigger.groupers_s"] = seeded.groupers_s
            m["trigger.references_s"] = seeded.references_s
            m["trigger.configurations_s"] = seeded.configurations_s
            m["trigger.total_s"] = m["trigger.parse_s"] + seeded.total_s
            out.checks["trigger_counts"] = seeded.counts
            log(
                f"  trigger design: references {seeded.references_s:.2f}s, "
                f"configurations {seeded.configurations_s:.2f}s, total {m['trigger.total_s']:.2f}s"
            )

            # --- 2. this project: load + build -------------------------------------------------
            tes = project.load_tes([dataset.tes_dir], settings)
            cfg = project.load_configurations(dataset.configurations_file, settings)
            built = project.build(settings)
            m["project.load_tes_s"] = tes.wall_s
            m["project.load_configurations_s"] = cfg.wall_s
            m["project.build_wall_s"] = built.wall_s
            m["project.total_s"] = tes.wall_s + cfg.wall_s + built.wall_s
            m["project.nodes_sum_s"] = sum(built.nodes.values())
            m["project.cache_node_full_s"] = _node(built)
            around = built.around_node(project.CACHE_NODE, "model")
            if around is None:
                raise project.BenchError(
                    "dbt build: no timings for the refinement_cache node in run_results.json"
                )
            # the build's nodes, split at the cache: what must finish before it can start (its
            # upstream models and their tests) and what can only start after it (its tests)
            m["project.build_before_cache_s"], m["project.build_after_cache_s"] = around
            m["loader.bytes"] = float(tes.bytes)
            m["loader.mb_per_s"] = tes.mb_per_s
            out.slowest_nodes = built.slowest(8)
            log(
                f"  project: load tes {tes.wall_s:.2f}s ({tes.mb_per_s:.1f} MB/s), "
                f"configurations {cfg.wall_s:.2f}s, build {built.wall_s:.2f}s, "
                f"refinement_cache node {m['project.cache_node_full_s']:.3f}s "
                f"(starts {m['project.build_before_cache_s']:.2f}s into the build's nodes; "
                f"{m['project.build_after_cache_s']:.2f}s of nodes after it)"
            )

            trigger_keys = td.cache_keys(conn)
            our_keys = project.cache_keys(settings)
            out.checks["cache_rows"] = {"trigger": len(trigger_keys), "project": len(our_keys)}
            out.checks["same_cache_keys"] = trigger_keys == our_keys
            out.checks["keys_only_trigger"] = sorted(map(list, trigger_keys - our_keys))[:10]
            out.checks["keys_only_project"] = sorted(map(list, our_keys - trigger_keys))[:10]
            out.checks["trigger_codes_contained"] = _codes_agreement(
                td.cache_codes(conn), project.cache_codes(settings)
            )

            rebuilt = project.rebuild_cache(settings)
            m["project.cache_node_rebuild_s"] = _node(rebuilt)
            log(f"  refinement_cache node alone, --full-refresh: {m['project.cache_node_rebuild_s']:.3f}s")

            # what the requirements of other issues cost on their own (the floors of the ratios)
            m["project.gin_index_s"] = project.gin_index_s(settings)
            m["project.parse_s"] = project.parse_s(settings)
            m["project.recomputation_test_s"] = built.node_s(project.RECOMPUTATION_TEST, "test") or 0.0
            log(
                f"  of which required elsewhere: GIN index {m['project.gin_index_s']:.3f}s, "
                f"dbt parse {m['project.parse_s']:.3f}s, "
                f"recomputation test {m['project.recomputation_test_s']:.3f}s"
            )

            # --- 3. incremental cases -------------------------------------------------------------
            noop = project.refresh_cache(settings)
            m["project.noop_node_s"] = _node(noop)
            m["project.noop_fingerprint_node_s"] = noop.node_s(project.FINGERPRINT_NODE, "model") or 0.0
            m["project.noop_wall_s"] = noop.wall_s
            m["trigger.noop_s"] = 0.0

            eligible = [int(c["id"]) for c in td.insertable(conn, configurations) if c.get("is_active")]
            runs_dir = workdir / f"run-{index + 1}"
            current = configurations
            for case, count in (("edit_one", 1), ("edit_1pct", max(1, math.ceil(len(eligible) / 100)))):
                snapshot, edited = data.edit_configurations(
                    current, eligible, count, seed=1000 * index + count, stamp=datetime.now(UTC)
                )
                file = data.write_json(runs_dir / f"configurations-{case}.json", snapshot)
                m[f"trigger.{case}_s"] = td.update_configurations(conn, edited)
                loaded = project.load_configurations(file, settings)
                refreshed = project.refresh_cache(settings)
                m[f"project.{case}_load_s"] = loaded.wall_s
                m[f"project.{case}_node_s"] = _node(refreshed)
                m[f"project.{case}_wall_s"] = refreshed.wall_s
                m[f"project.{case}_rows"] = float(len(edited))
                fingerprint_node = refreshed.node_s(project.FINGERPRINT_NODE, "model")
                m[f"project.{case}_fingerprint_node_s"] = fingerprint_node or 0.0
                if case == "edit_one":
                    out.checks["edit_visible"] = _edit_visible(settings, edited[0])
                current = snapshot

            configured = [
                (str(c["child_grouper_url"]), str(c["child_grouper_version"]))
                for c in td.insertable(conn, configurations)
                if c.get("is_active")
            ]
            rs_total = int(dataset.counts.get("reporting_spec_grouper", 0))
            file, changed = data.republish(
                dataset.tes_dir,
                configured,
                max(1, math.ceil(rs_total / 100)),
                seed=index,
                out_file=runs_dir / "republished" / "reporting_spec_groupers.json",
            )
            republished = [g for g in map(tes_files.to_grouper, changed) if g is not None]
            m["trigger.republish_s"] = td.republish_groupers(conn, republished)
            loaded_fix = project.load_tes([file], settings)
            refreshed = project.refresh_cache(settings)
            m["project.republish_load_s"] = loaded_fix.wall_s
            m["project.republish_node_s"] = _node(refreshed)
            m["project.republish_wall_s"] = refreshed.wall_s
            m["project.republish_groupers"] = float(len(changed))

            started = time.perf_counter()
            next_groupers = tes_files.read_groupers([dataset.next_release_dir])
            timings = td.SeedTimings()
            td.load_groupers(conn, next_groupers, timings)
            m["trigger.new_release_s"] = time.perf_counter() - started
            loaded_release = project.load_tes([dataset.next_release_dir], settings)
            refreshed = project.refresh_cache(settings)
            m["project.new_release_load_s"] = loaded_release.wall_s
            m["project.new_release_node_s"] = _node(refreshed)
            m["project.new_release_wall_s"] = refreshed.wall_s
            after = project.cache_keys(settings)
            out.checks["same_cache_keys_after_incremental"] = td.cache_keys(conn) == after

            # --- 4. lookups -----------------------------------------------------------------------
            keys = sorted(after)
            ours = lookups.measure(conn, project.CACHE_RELATION, keys, count=lookup_count)
            theirs = lookups.measure(conn, f"{td.SCHEMA}.refinement_cache", keys, count=lookup_count)
            m["lookup.project_p50_ms"] = ours.p50_ms
            m["lookup.project_p99_ms"] = ours.p99_ms
            m["lookup.trigger_p50_ms"] = theirs.p50_ms
            m["lookup.trigger_p99_ms"] = theirs.p99_ms
            out.checks["lookup_misses"] = ours.misses
            # "which conditions and jurisdictions keep code X": the analytics mart (built by the
            # first `dbt build`), not the cache, answers it (docs/analytics.md)
            by_code = lookups.measure_codes(conn, lookups.grouper_codes(conn), count=min(lookup_count, 1_000))
            m["lookup.code_p50_ms"] = by_code.p50_ms
            m["lookup.code_p99_ms"] = by_code.p99_ms
            nodes = ", ".join(
                f"{case} {m[f'project.{case}_node_s'] * 1000:.0f} ms"
                for case in ("noop", "edit_one", "edit_1pct", "republish", "new_release")
            )
            log(
                f"  refinement_cache node: {nodes}; lookup p99 {ours.p99_ms:.3f} ms;"
                f" conditions keeping a code p99 {by_code.p99_ms:.3f} ms"
            )
        finally:
            conn.close()
    return out


def _node(timing: project.DbtTiming) -> float:
    seconds = timing.cache_node_s
    if seconds is None:
        raise project.BenchError(f"dbt {' '.join(timing.args)} did not run {project.CACHE_NODE}")
    return seconds


def _edit_visible(settings: DatabaseSettings, edited: dict[str, Any]) -> bool:
    """The code added to the edited configuration is in some cache row of its jurisdiction."""
    code = edited["loinc_codes"][-1]
    with connection.connect(settings) as conn:
        row = conn.execute(
            f"select count(*) from {project.CACHE_RELATION} "
            "where jurisdiction_id = %s and %s = any(aggregated_codes)",
            (edited["jurisdiction_id"], code),
        ).fetchone()
    return bool(row and row[0])


def environment(admin: DatabaseSettings) -> dict[str, Any]:
    import platform
    import subprocess

    from dbt.version import __version__ as dbt_version

    with psycopg.connect(admin.conninfo()) as conn:
        server = conn.execute("show server_version").fetchone()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "postgres": server[0] if server else "?",
        "python": platform.python_version(),
        "dbt": dbt_version,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "git_commit": commit,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def medians(runs: list[RunOutcome]) -> dict[str, float]:
    names = sorted({name for run in runs for name in run.metrics})
    return {name: statistics.median(r.metrics[name] for r in runs if name in r.metrics) for name in names}


def run_scale(
    scale: str,
    runs: int,
    workdir: Path,
    *,
    lookup_count: int = 10_000,
    keep: bool = False,
    working_tree: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Every run of one scale; the result document written to `<scale>.json`."""
    admin = server_settings()
    started = time.perf_counter()
    log(f"== {scale}: generating data")
    dataset = data.prepare(scale, workdir / "data")
    log(f"   {dataset.counts} ({dataset.tes_bytes / 1e6:.1f} MB of TES JSON)")
    known = {ident for ident, _, _ in project.jurisdictions()}
    wanted = sorted(
        {str(c["jurisdiction_id"]) for c in data.load_configurations(dataset.configurations_file)}
        - known
        - {UNKNOWN_JURISDICTION}
    )
    if wanted:
        log(f"   {len(wanted)} synthetic jurisdictions appended to the benchmarked project's seed")
    dirty = project.uncommitted_project_changes()
    project_dir = project.snapshot_project(workdir / "project", wanted, working_tree=working_tree)
    outcomes: list[RunOutcome] = []
    with dbt_paths(workdir / "dbt", project_dir):
        for index in range(runs):
            outcomes.append(
                run_once(dataset, admin, workdir, index, lookup_count=lookup_count, keep=keep, log=log)
            )
    return {
        "scale": scale,
        "runs": runs,
        "dataset": dataset.describe(),
        "environment": environment(admin),
        "elapsed_s": time.perf_counter() - started,
        "project_source": "working tree" if working_tree else "git HEAD",
        "project_uncommitted_changes": dirty if working_tree else False,
        "jurisdictions_added_to_seed": len(wanted),
        "median": medians(outcomes),
        "per_run": [o.metrics for o in outcomes],
        "checks": [o.checks for o in outcomes],
        "slowest_nodes": outcomes[-1].slowest_nodes,
    }
