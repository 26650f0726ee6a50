"""Tables of the operator's commands (bench/commands.py): per scale and server, and combined."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCALE_ORDER = ("tiny", "small", "production", "large")
SERVER_ORDER = ("postgres", "embedded")
TARGET_SCALES = ("production", "large")  # the scales the targets are set for


@dataclass(frozen=True)
class CommandTarget:
    """A ratio taken within each run, at most `goals[scale]` (median over the runs)."""

    name: str
    ratio: str  # the per-run ratio metric (bench.commands.RATIOS)
    goals: dict[str, float]

    def goal(self, scale: str) -> float:
        return self.goals.get(scale, self.goals["production"])

    def goal_text(self, scale: str) -> str:
        applies = "" if scale in TARGET_SCALES else " (set for production)"
        return f"<= {self.goal(scale):g}x{applies}"


TARGETS = (
    CommandTarget(
        "`refinery sync`, nothing changed / first load + build",
        "ratio.noop_vs_first",
        {"production": 0.10, "large": 0.10},
    ),
    CommandTarget(
        "one configuration edited, `refinery sync` / first load + build",
        "ratio.edit_one_vs_first",
        {"production": 0.25, "large": 0.10},
    ),
    CommandTarget(
        "one new TES release, `refinery sync` / first load + build",
        "ratio.new_release_vs_first",
        {"production": 0.5, "large": 0.5},
    ),
    CommandTarget(
        "first load + build / trigger design fed by COPY",
        "ratio.first_vs_trigger_copy",
        {"production": 1.5, "large": 0.7},
    ),
    CommandTarget(
        "refinement_cache node (first build) / trigger design's configuration phase (COPY-fed)",
        "ratio.cache_node_vs_trigger_copy_configurations",
        {"production": 0.25, "large": 0.25},
    ),
)
GROWTH = (
    ("`refinery sync`, nothing changed: large / production", "cmd.noop_s", 1.5),
    ("one configuration edited, `refinery sync`: large / production", "cmd.edit_one_s", 1.5),
)
# (label, metric) of the figures table; "…" rows are parts of the row above
FIGURES = (
    ("`refinery db init` (once per database; not part of the first load)", "cmd.db_init_s"),
    ("first load + build (sum of the three commands)", "cmd.first_s"),
    ("… `refinery load tes`", "cmd.first.load_tes_s"),
    ("… `refinery load configurations`", "cmd.first.load_configurations_s"),
    ("… `refinery build`", "cmd.first.build_s"),
    ("… … of which the refinement_cache node", "cmd.first.cache_node_s"),
    ("`refinery sync`, nothing changed", "cmd.noop_s"),
    ("… step load_tes", "cmd.noop.load_tes_step_s"),
    ("… step load_configurations", "cmd.noop.load_configurations_step_s"),
    ("… step build", "cmd.noop.build_step_s"),
    ("one configuration edited, `refinery sync`", "cmd.edit_one_s"),
    ("… step load_tes", "cmd.edit_one.load_tes_step_s"),
    ("… step load_configurations", "cmd.edit_one.load_configurations_step_s"),
    ("… step build", "cmd.edit_one.build_step_s"),
    ("one new TES release, `refinery sync`", "cmd.new_release_s"),
    ("… step load_tes", "cmd.new_release.load_tes_step_s"),
    ("… step load_configurations", "cmd.new_release.load_configurations_step_s"),
    ("… step build", "cmd.new_release.build_step_s"),
    ("trigger design fed row by row (its seeding process)", "trigger.rows_s"),
    ("… configuration phase (cache upsert per row)", "trigger.rows.configurations_s"),
    ("trigger design fed by COPY (its seeding process)", "trigger.copy_s"),
    ("… groupers", "trigger.copy.groupers_s"),
    ("… references (parent re-aggregation per row)", "trigger.copy.references_s"),
    ("… configuration phase (cache upsert per row)", "trigger.copy.configurations_s"),
)
INFO_RATIOS = (
    ("first load + build / trigger design fed row by row", "ratio.first_vs_trigger_rows"),
    (
        "refinement_cache node / trigger design's configuration phase (row by row)",
        "ratio.cache_node_vs_trigger_rows_configurations",
    ),
)


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def ratio_text(value: float) -> str:
    return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"


def same_run_ratio(result: dict[str, Any], metric: str) -> float | None:
    """The median over runs of a ratio each run took from its own measurements."""
    values = [run[metric] for run in result.get("per_run") or [] if metric in run]
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class Evaluated:
    name: str
    goal: str
    value: float | None
    measured: str
    status: str  # PASS, MISS, n/a (scale without a target), — (not measured)


def evaluate(result: dict[str, Any]) -> list[Evaluated]:
    """Each target's same-run ratio (median) against its goal at this scale."""
    scale = result["scale"]
    out = []
    for target in TARGETS:
        value = same_run_ratio(result, target.ratio)
        runs = [run[target.ratio] for run in result.get("per_run") or [] if target.ratio in run]
        if value is None:
            out.append(Evaluated(target.name, target.goal_text(scale), None, "not measured", "—"))
            continue
        measured = ratio_text(value) + (
            f" (runs: {', '.join(ratio_text(v) for v in runs)})" if len(runs) > 1 else ""
        )
        passed = value <= target.goal(scale)
        status = "n/a" if scale not in TARGET_SCALES else "PASS" if passed else "MISS"
        out.append(Evaluated(target.name, target.goal_text(scale), value, measured, status))
    return out


def growth(results: Sequence[dict[str, Any]], server: str) -> list[Evaluated]:
    """Large against production for one server, from their medians (two separate runs)."""
    by_scale = {r["scale"]: r for r in results if r.get("server") == server}
    production, large = by_scale.get("production"), by_scale.get("large")
    out = []
    for name, metric, goal in GROWTH:
        if production is None or large is None:
            out.append(Evaluated(name, f"<= {goal:g}x", None, "needs production and large", "—"))
            continue
        base, grown = production["median"][metric], large["median"][metric]
        value = grown / base if base > 0 else float("inf")
        out.append(
            Evaluated(
                name,
                f"<= {goal:g}x",
                value,
                f"{ratio_text(value)} ({seconds(grown)} / {seconds(base)})",
                "PASS" if value <= goal else "MISS",
            )
        )
    return out


def _heading(result: dict[str, Any]) -> str:
    counts = result["dataset"]["counts"]
    spec = result["dataset"]["spec"]
    return (
        f"{result['scale']} — {spec['jurisdictions']} jurisdictions, "
        f"{counts.get('reporting_spec_grouper', 0):,} RS groupers, "
        f"{counts.get('condition_grouper', 0):,} condition groupers, "
        f"{counts.get('configurations', 0):,} configurations, "
        f"{result['dataset']['tes_bytes'] / 1e6:.1f} MB TES JSON"
    )


def _environment(result: dict[str, Any]) -> str:
    env = result["environment"]
    return (
        f"{result['server']}: median of {result['runs']} run(s); PostgreSQL {env['postgres']}, "
        f"{env['cpus']} CPUs, dbt {env['dbt']}, commit {env['git_commit'] or '?'}, "
        f"{env['finished_at']}, {result['elapsed_s']:.0f} s in all"
    )


# `refinery sync`'s steps in the order it runs them (the stored JSON's keys are sorted)
SYNC_STEPS = ("lock", "fetch", "load_tes", "load_configurations", "build", "export", "sync")


def _steps(statuses: dict[str, str] | None) -> str:
    """Step statuses in sync's order, the same whether fresh or read back from the JSON."""
    if not statuses:
        return "?"
    order = [step for step in SYNC_STEPS if step in statuses] + sorted(set(statuses) - set(SYNC_STEPS))
    return ", ".join(f"{step} {statuses[step]}" for step in order)


def _count(models: Sequence[str] | None) -> str:
    return "?" if models is None else str(len(models))


def _checks(result: dict[str, Any]) -> str:
    parts = []
    for number, check in enumerate(result.get("checks") or [], start=1):
        parts.append(
            f"run {number}: build plans no-op/edit/release {check.get('noop_plan')}/"
            f"{check.get('edit_one_plan')}/{check.get('new_release_plan')}, models run "
            f"{_count(check.get('noop_models'))}/{_count(check.get('edit_one_models'))}/"
            f"{_count(check.get('new_release_models'))}, "
            f"edit visible in the cache {check.get('edit_visible')}, "
            f"new release rows loaded {check.get('new_release_loaded')}, "
            f"no-op steps {_steps(check.get('noop_steps'))}, "
            f"trigger cache rows rows/copy {check.get('trigger_rows_cache_keys')}/"
            f"{check.get('trigger_copy_cache_keys')}"
        )
    return "; ".join(parts)


def markdown(result: dict[str, Any]) -> str:
    """The table of one scale on one server."""
    m = result["median"]
    lines = [
        f"### {_heading(result)} — {result['server']}",
        "",
        _environment(result) + ".",
        "",
        "| measurement | median | runs |",
        "| --- | ---: | --- |",
    ]
    for label, metric in FIGURES:
        if metric not in m:
            continue
        runs = [run[metric] for run in result["per_run"] if metric in run]
        lines.append(f"| {label} | {seconds(m[metric])} | {', '.join(seconds(v) for v in runs)} |")
    lines += [
        "",
        "| target (ratio within each run) | goal | measured (median) | status |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {e.name} | {e.goal} | {e.measured} | {e.status} |" for e in evaluate(result)]
    for label, metric in INFO_RATIOS:
        value = same_run_ratio(result, metric)
        if value is not None:
            lines.append(f"| {label} (for comparison) | — | {ratio_text(value)} | — |")
    lines += ["", f"Checks: {_checks(result)}.", ""]
    return "\n".join(lines)


def write_result(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result['scale']}-{result['server']}"
    document = dict(result)
    document["targets"] = [e.__dict__ for e in evaluate(result)]
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    md_path = out / f"{stem}.md"
    md_path.write_text(markdown(result), encoding="utf-8")
    return json_path, md_path


def load_results(out: Path) -> list[dict[str, Any]]:
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for scale in SCALE_ORDER
        for server in SERVER_ORDER
        if (path := out / f"{scale}-{server}.json").exists()
    ]


def _server_label(result: dict[str, Any]) -> str:
    return f"{result['server']} (PostgreSQL {result['environment']['postgres'].split(' ')[0]})"


def combined(results: Sequence[dict[str, Any]], *, node_tables: bool = False) -> str:
    """bench/results/README.md: per scale, every figure and target on both servers side by side."""
    parts = [
        "# Benchmark results",
        "",
        "Generated by `python -m bench` (regenerate with `python -m bench --report-only`); what the",
        "figures mean: [docs/scaling.md](../../docs/scaling.md#the-benchmark). Wall clock of the",
        "commands an operator runs, each a process of the real CLI against a fresh database; ratios",
        "are taken within each run, and the median over the runs is shown.",
        "",
        "Every target of the operator's commands, met or missed, on both servers:",
        "[commands.md](commands.md).",
        "",
    ]
    if not results:
        parts += ["No command results yet: run `python -m bench --scale production`.", ""]
    for scale in SCALE_ORDER:
        here = [r for r in results if r["scale"] == scale]
        if not here:
            continue
        parts += [f"## {_heading(here[0])}", ""]
        parts += [f"- {_environment(r)}" for r in here]
        parts += ["", "| measurement | " + " | ".join(_server_label(r) for r in here) + " |"]
        parts.append("| --- |" + " ---: |" * len(here))
        for label, metric in FIGURES:
            if not any(metric in r["median"] for r in here):
                continue
            cells = [seconds(r["median"][metric]) if metric in r["median"] else "—" for r in here]
            parts.append(f"| {label} | " + " | ".join(cells) + " |")
        parts += [
            "",
            "| target (ratio within each run) | goal | "
            + " | ".join(f"{r['server']} | status" for r in here)
            + " |",
            "| --- | --- |" + " --- | --- |" * len(here),
        ]
        evaluated = [evaluate(r) for r in here]
        for row, target in enumerate(TARGETS):
            cells = [f"{e[row].measured} | {e[row].status}" for e in evaluated]
            parts.append(f"| {target.name} | {evaluated[0][row].goal} | " + " | ".join(cells) + " |")
        for label, metric in INFO_RATIOS:
            values = [same_run_ratio(r, metric) for r in here]
            cells = [f"{ratio_text(v)} | —" if v is not None else "— | —" for v in values]
            parts.append(f"| {label} (for comparison) | — | " + " | ".join(cells) + " |")
        parts.append("")
    servers = [s for s in SERVER_ORDER if any(r.get("server") == s for r in results)]
    if any(r["scale"] == "production" for r in results) or any(r["scale"] == "large" for r in results):
        parts += [
            "## Growth: large against production (medians of the two scales' runs)",
            "",
            "| target | goal | " + " | ".join(f"{s} | status" for s in servers) + " |",
            "| --- | --- |" + " --- | --- |" * len(servers),
        ]
        evaluated = {s: growth(results, s) for s in servers}
        for row, (name, _, goal) in enumerate(GROWTH):
            cells = [f"{evaluated[s][row].measured} | {evaluated[s][row].status}" for s in servers]
            parts.append(f"| {name} | <= {goal:g}x | " + " | ".join(cells) + " |")
        parts.append("")
    if node_tables:
        parts += [
            "Per-node measurements (the refinement_cache node in each incremental case, lookups, the",
            "loader's throughput; `python -m bench --suite nodes`): [nodes.md](nodes.md).",
            "",
        ]
    return "\n".join(parts)


VERDICT = {"PASS": "met", "MISS": "missed", "n/a": "no target at this scale", "—": "not measured"}
# the walls the targets are ratios of, in the targets table's figures section
KEY_FIGURES = (
    ("first load + build", "cmd.first_s"),
    ("`refinery sync`, nothing changed", "cmd.noop_s"),
    ("one configuration edited, `refinery sync`", "cmd.edit_one_s"),
    ("one new TES release, `refinery sync`", "cmd.new_release_s"),
    ("trigger design fed by COPY", "trigger.copy_s"),
    ("refinement_cache node (first build)", "cmd.first.cache_node_s"),
    ("trigger design's configuration phase (COPY-fed)", "trigger.copy.configurations_s"),
)


def _cell(evaluated: Evaluated) -> str:
    if evaluated.status == "—":
        return evaluated.measured
    return f"{evaluated.measured} — {VERDICT[evaluated.status]}"


def targets_table(results: Sequence[dict[str, Any]]) -> str:
    """bench/results/commands.md: every target of issue #16 at production and large scale on both
    servers, each with its goal and whether it was met, and the walls the ratios come from."""
    by_key = {(r["scale"], r["server"]): r for r in results}
    lines = [
        "# The operator's commands against their targets",
        "",
        "Generated by `python -m bench --scale production|large --server postgres|embedded` from the",
        "stored `<scale>-<server>.json` (regenerate with `python -m bench --report-only`). Wall clock",
        "of the whole command; a ratio is taken within each run and the median over the runs is",
        "shown, with each run's ratio in brackets. Every figure per scale: [README.md](README.md).",
        "",
        "| scale | target | goal | " + " | ".join(SERVER_ORDER) + " |",
        "| --- | --- | --- |" + " --- |" * len(SERVER_ORDER),
    ]
    for scale in TARGET_SCALES:
        for row, target in enumerate(TARGETS):
            cells = []
            for server in SERVER_ORDER:
                result = by_key.get((scale, server))
                cells.append(_cell(evaluate(result)[row]) if result is not None else "not measured")
            lines.append(
                f"| {scale} | {target.name} | {target.goal_text(scale)} | " + " | ".join(cells) + " |"
            )
    growths = {server: growth(results, server) for server in SERVER_ORDER}
    for row, (name, _, goal) in enumerate(GROWTH):
        cells = [_cell(growths[server][row]) for server in SERVER_ORDER]
        lines.append(f"| large / production | {name} | <= {goal:g}x | " + " | ".join(cells) + " |")
    measured = [
        (scale, server) for scale in SCALE_ORDER for server in SERVER_ORDER if (scale, server) in by_key
    ]
    lines += [
        "",
        "Medians of the walls the ratios are taken from:",
        "",
        "| figure | " + " | ".join(f"{scale}, {server}" for scale, server in measured) + " |",
        "| --- |" + " ---: |" * len(measured),
    ]
    for label, metric in KEY_FIGURES:
        cells = [
            seconds(by_key[key]["median"][metric]) if metric in by_key[key]["median"] else "—"
            for key in measured
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Where each was measured:", ""]
    lines += [f"- {by_key[key]['scale']}, {_environment(by_key[key])}" for key in measured]
    lines.append("")
    return "\n".join(lines)


def write_combined(out: Path, *, node_tables: bool = False) -> Path:
    """README.md (every figure per scale) and commands.md (the targets) from the stored JSON."""
    results = load_results(out)
    (out / "commands.md").write_text(targets_table(results), encoding="utf-8")
    path = out / "README.md"
    path.write_text(combined(results, node_tables=node_tables), encoding="utf-8")
    return path


def rewrite_all(out: Path, *, node_tables: bool = False) -> list[Path]:
    """Every `<scale>-<server>.md` and the README again from the stored JSON."""
    written = []
    for result in load_results(out):
        written.append(write_result(result, out)[1])
    written.append(write_combined(out, node_tables=node_tables))
    return written
