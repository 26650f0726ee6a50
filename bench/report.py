"""Targets, Markdown tables, the combined README and the cost-against-scale plot."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCALE_ORDER = ("tiny", "small", "production", "large")


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str
    passed: bool | None  # None: not applicable at this scale

    @property
    def status(self) -> str:
        return "n/a" if self.passed is None else "PASS" if self.passed else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "goal": self.goal, "measured": self.measured, "status": self.status}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio(ours: float, theirs: float) -> float | None:
    return ours / theirs if theirs > 0 else None


def _ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"


def same_run_ratios(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """The two ratio targets, taken within each run (both designs on the same machine state)
    and then the median over runs: the cache node alone (--full-refresh; the in-build node time
    for results written before that measurement existed) against the trigger design's
    configuration phase, and load + build against the trigger design's whole seed."""
    cache, end_to_end, gin, floor = [], [], [], []
    for m in runs:
        full = m.get("project.cache_node_rebuild_s", m["project.cache_node_full_s"])
        cache.append(ratio(full, m["trigger.configurations_s"]) or 0.0)
        end_to_end.append(ratio(m["project.total_s"], m["trigger.total_s"]) or 0.0)
        if "project.gin_index_s" in m:
            gin.append(ratio(m["project.gin_index_s"], m["trigger.configurations_s"]) or 0.0)
        required = required_parts_s(m)
        if required is not None:
            floor.append(ratio(required, m["trigger.total_s"]) or 0.0)
    medians = {"cache_full": statistics.median(cache), "end_to_end": statistics.median(end_to_end)}
    if gin:
        medians["gin_index"] = statistics.median(gin)
    if floor:
        medians["required_parts"] = statistics.median(floor)
    return medians


def required_parts_s(m: dict[str, float]) -> float | None:
    """The parts of end to end that other issues require, summed: the load, dbt's parse on a
    fresh database, the GIN index (#6) and the recomputation test (#4, as implemented); None
    for results measured before these were."""
    parts = (
        "project.load_tes_s",
        "project.load_configurations_s",
        "project.parse_s",
        "project.gin_index_s",
        "project.recomputation_test_s",
    )
    if not all(part in m for part in parts):
        return None
    return sum(m[part] for part in parts)


def targets(result: dict[str, Any]) -> list[Target]:
    """The issue's targets, each PASS/MISS (n/a where it applies to another scale)."""
    m = result["median"]
    production = result["scale"] == "production"
    full = m.get("project.cache_node_rebuild_s", m["project.cache_node_full_s"])
    ratios = same_run_ratios(result.get("per_run") or [m])
    cache_ratio, end_to_end = ratios["cache_full"], ratios["end_to_end"]
    gin_text = f"; the GIN index alone (#6) {ratios['gin_index']:.2f}x" if "gin_index" in ratios else ""
    floor_text = (
        f"; load + parse + GIN index + recomputation test alone {ratios['required_parts']:.2f}x"
        if "required_parts" in ratios
        else ""
    )
    checks = result.get("checks") or [{}]
    same_keys = all(c.get("same_cache_keys") and c.get("same_cache_keys_after_incremental") for c in checks)
    return [
        Target(
            "refinement_cache full build vs trigger configuration phase",
            "<= 0.1x (production)",
            f"medians {_s(full)} vs {_s(m['trigger.configurations_s'])}; "
            f"same-run ratio (median) {cache_ratio:.3f}x{gin_text}",
            cache_ratio <= 0.1 if production else None,
        ),
        Target(
            "load + build end to end vs trigger design seed",
            "<= 1.0x (production)",
            f"medians {_s(m['project.total_s'])} vs {_s(m['trigger.total_s'])}; "
            f"same-run ratio (median) {end_to_end:.2f}x{floor_text}",
            end_to_end <= 1.0 if production else None,
        ),
        Target(
            "one configuration edited: refinement_cache node",
            "< 100 ms",
            _ms(m["project.edit_one_node_s"]),
            m["project.edit_one_node_s"] < 0.100,
        ),
        Target(
            "no-op run: refinement_cache node",
            "< 50 ms",
            _ms(m["project.noop_node_s"]),
            m["project.noop_node_s"] < 0.050,
        ),
        Target(
            "loader throughput (TES JSON into raw.tes_valuesets)",
            ">= 50 MB/s",
            f"{m['loader.mb_per_s']:.1f} MB/s",
            m["loader.mb_per_s"] >= 50.0,
        ),
        Target(
            "cache lookup by key, p99 (prepared, 10,000 keys)",
            "< 1 ms",
            f"{m['lookup.project_p99_ms']:.4f} ms",
            m["lookup.project_p99_ms"] < 1.0,
        ),
        Target(
            "both designs produce the same cache keys",
            "equal",
            "equal" if same_keys else "DIFFERENT",
            same_keys,
        ),
    ]


def _rows(m: dict[str, float]) -> list[tuple[str, float | None, float | None]]:
    """The table's rows: (label, trigger design, this project)."""
    cache_rows = [
        (
            "refinement_cache node, full build (in the first dbt build)",
            m["trigger.configurations_s"],
            m["project.cache_node_full_s"],
        ),
        (
            "refinement_cache node alone, --full-refresh",
            m["trigger.configurations_s"],
            m.get("project.cache_node_rebuild_s"),
        ),
    ]
    end_to_end_rows = [("end to end: load + build / whole seed", m["trigger.total_s"], m["project.total_s"])]
    required = required_parts_s(m)
    if required is not None:  # results measured before the parts were leave these rows out
        cache_rows.append(
            (
                "… of which the GIN index on aggregated_codes (#6; the trigger design has none)",
                m["trigger.configurations_s"],
                m["project.gin_index_s"],
            )
        )
        end_to_end_rows += [
            (
                "… of which dbt's parse (a fresh database; inside the build's wall)",
                None,
                m["project.parse_s"],
            ),
            (
                "… of which the recomputation test (#4; a node of the build)",
                None,
                m["project.recomputation_test_s"],
            ),
            ("… load + parse + GIN index + recomputation test alone", m["trigger.total_s"], required),
        ]
    if "project.build_before_cache_s" in m:
        # where the build's wall goes along its chain: the cache waits for its inputs and their
        # tests, and its own tests (the recomputation test among them) can only follow it
        end_to_end_rows += [
            (
                "… of which the build's nodes before the refinement_cache node starts "
                "(upstream models, their tests)",
                None,
                m["project.build_before_cache_s"],
            ),
            (
                "… of which the build's nodes after the refinement_cache node ends (its tests)",
                None,
                m["project.build_after_cache_s"],
            ),
        ]

    def fingerprint_rows(case: str) -> list[tuple[str, float | None, float | None]]:
        # the per-jurisdiction fingerprints the cache node compares are a node of their own,
        # upstream: shown beside the cache node's figure, not hidden from it
        seconds = m.get(f"project.{case}_fingerprint_node_s")
        return (
            []
            if seconds is None
            else [
                (
                    "… and upstream, int_cache_inputs_fingerprinted (its inputs, per jurisdiction)",
                    None,
                    seconds,
                )
            ]
        )

    return [
        (
            "TES groupers + references (trigger: row by row)",
            m["trigger.groupers_s"] + m["trigger.references_s"],
            None,
        ),
        ("… of which references (parent re-aggregation per row)", m["trigger.references_s"], None),
        ("configurations (trigger: cache upsert per row)", m["trigger.configurations_s"], None),
        ("load TES JSON (COPY into raw)", None, m["project.load_tes_s"]),
        ("load configurations snapshot", None, m["project.load_configurations_s"]),
        ("dbt build (wall, all models + tests)", None, m["project.build_wall_s"]),
        *cache_rows,
        *end_to_end_rows,
        ("no-op: refinement_cache node", m["trigger.noop_s"], m["project.noop_node_s"]),
        *fingerprint_rows("noop"),
        ("one configuration edited: node", m["trigger.edit_one_s"], m["project.edit_one_node_s"]),
        *fingerprint_rows("edit_one"),
        ("1% of configurations edited: node", m["trigger.edit_1pct_s"], m["project.edit_1pct_node_s"]),
        ("1% of RS groupers re-published: node", m["trigger.republish_s"], m["project.republish_node_s"]),
        ("new TES release: node", m["trigger.new_release_s"], m["project.new_release_node_s"]),
        ("new TES release: load (project)", None, m["project.new_release_load_s"]),
    ]


def markdown(result: dict[str, Any]) -> str:
    m = result["median"]
    counts = result["dataset"]["counts"]
    spec = result["dataset"]["spec"]
    env = result["environment"]
    lines = [
        f"### {result['scale']} — {spec['jurisdictions']} jurisdictions, "
        f"{counts.get('reporting_spec_grouper', 0):,} RS groupers, "
        f"{counts.get('condition_grouper', 0):,} condition groupers, "
        f"{counts.get('configurations', 0):,} configurations, "
        f"{result['dataset']['tes_bytes'] / 1e6:.1f} MB TES JSON",
        "",
        f"Median of {result['runs']} run(s); PostgreSQL {env['postgres']}, {env['cpus']} CPUs, "
        f"dbt {env['dbt']}, commit {env['git_commit'] or '?'}, {env['finished_at']}.",
        "",
        "| measurement | trigger design | this project | ratio of the medians |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, theirs, ours in _rows(m):
        cells = [_s(theirs) if theirs is not None else "", _s(ours) if ours is not None else ""]
        value = ratio(ours, theirs) if ours is not None and theirs is not None else None
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {_ratio_text(value)} |")
    lines += [
        f"| loader throughput | | {m['loader.mb_per_s']:.1f} MB/s | |",
        f"| lookup p50 / p99 | {m['lookup.trigger_p50_ms']:.3f} / {m['lookup.trigger_p99_ms']:.3f} ms "
        f"| {m['lookup.project_p50_ms']:.3f} / {m['lookup.project_p99_ms']:.3f} ms | |",
        "",
        "| target | goal | measured | status |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {t.name} | {t.goal} | {t.measured} | {t.status} |" for t in targets(result)]
    return "\n".join(lines) + "\n"


def write_scale(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    document = dict(result)
    document["targets"] = [t.as_json() for t in targets(result)]
    json_path = out / f"{result['scale']}.json"
    json_path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    md_path = out / f"{result['scale']}.md"
    md_path.write_text(markdown(result), encoding="utf-8")
    return json_path, md_path


def load_results(out: Path) -> list[dict[str, Any]]:
    found = [
        json.loads((out / f"{scale}.json").read_text())
        for scale in SCALE_ORDER
        if (out / f"{scale}.json").exists()
    ]
    return found


def growth(
    results: Sequence[dict[str, Any]], metric: Callable[[dict[str, float]], float]
) -> list[tuple[str, str, float]]:
    """Log-log slope of a cost between consecutive scales, against configurations (1.0 = linear)."""
    points = [
        (r["scale"], r["dataset"]["counts"].get("configurations", 0), metric(r["median"]))
        for r in results
        if r["scale"] != "tiny"
    ]
    slopes = []
    for (a, na, ta), (b, nb, tb) in itertools.pairwise(points):
        if na > 0 and nb > na and ta > 0 and tb > 0:
            slopes.append((a, b, math.log(tb / ta) / math.log(nb / na)))
    return slopes


COSTS: dict[str, Callable[[dict[str, float]], float]] = {
    "trigger design: whole seed": lambda m: m["trigger.total_s"],
    "trigger design: configuration phase": lambda m: m["trigger.configurations_s"],
    "project: load + build": lambda m: m["project.total_s"],
    "project: refinement_cache node (full)": lambda m: m["project.cache_node_full_s"],
}


def linearity(results: Sequence[dict[str, Any]]) -> Target:
    """Large completes and the project's costs grow about linearly (slope <= 1.2 production→large)."""
    large = next((r for r in results if r["scale"] == "large"), None)
    if large is None:
        return Target("large scale completes, cost grows ~linearly", "slope <= 1.2", "large not run", None)
    slopes = {name: growth(results, fn) for name, fn in COSTS.items() if name.startswith("project")}
    last = {name: s[-1][2] for name, s in slopes.items() if s}
    text = ", ".join(f"{name.split(': ', 1)[1]} {value:.2f}" for name, value in last.items())
    return Target(
        "large scale completes, cost grows ~linearly",
        "log-log slope vs configurations <= 1.2 (production→large)",
        text,
        bool(last) and all(v <= 1.2 for v in last.values()),
    )


def plot(results: Sequence[dict[str, Any]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in results if r["scale"] != "tiny"] or list(results)
    if not usable:
        return None
    x = [r["dataset"]["counts"].get("configurations", 0) for r in usable]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for (name, fn), style in zip(COSTS.items(), ("o-", "s--", "^-", "v--"), strict=True):
        ax.plot(x, [fn(r["median"]) for r in usable], style, label=name)
    for xi, r in zip(x, usable, strict=True):
        ax.annotate(
            r["scale"],
            (xi, COSTS["trigger design: whole seed"](r["median"])),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("configurations (log)")
    ax.set_ylabel("seconds (log)")
    ax.set_title("Cost against scale: row-trigger design vs this project")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def combined(out: Path) -> str:
    """bench/results/nodes.md: every scale's per-node table, growth and the linearity target."""
    results = load_results(out)
    parts = [
        "# Benchmark results: per node",
        "",
        "Generated by `python -m bench --suite nodes` (dbt in-process, node timings from",
        "`run_results.json`); what the figures mean: [docs/scaling.md](../../docs/scaling.md).",
        "The wall clock of the operator's commands, on both servers: [README.md](README.md).",
        "",
    ]
    for result in results:
        parts.append(markdown(result))
    if len(results) > 1:
        parts += [
            "### Growth (log-log slope against configurations; 1.0 = linear)",
            "",
            "| cost | "
            + " | ".join(f"{a}→{b}" for a, b, _ in growth(results, COSTS["project: load + build"]))
            + " |",
            "| --- |" + " ---: |" * len(growth(results, COSTS["project: load + build"])),
        ]
        for name, fn in COSTS.items():
            parts.append(f"| {name} | " + " | ".join(f"{s:.2f}" for _, _, s in growth(results, fn)) + " |")
        target = linearity(results)
        parts += [
            "",
            f"Target — {target.name}: {target.goal}; measured {target.measured}: **{target.status}**",
            "",
        ]
    if (out / "cost_vs_scale.png").exists():
        parts += ["![cost against scale](cost_vs_scale.png)", ""]
    return "\n".join(parts)


def write_combined(out: Path, *, with_plot: bool = True) -> Path:
    results = load_results(out)
    if with_plot:
        plot(results, out / "cost_vs_scale.png")
    path = out / "nodes.md"
    path.write_text(combined(out), encoding="utf-8")
    return path
