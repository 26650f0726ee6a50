"""Drive this project the way an operator does: `refinery load tes`, `load configurations`,
`refinery build` — through the same Python APIs, in-process — and read dbt's own node timings."""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from loaders.errors import RefineryError
from refinery import connection
from refinery import dbt as refinery_dbt
from refinery.build_plan import WRITTEN_ROWS_TAG
from refinery.connection import DatabaseSettings
from refinery.paths import project_root

CACHE_NODE = "refinement_cache"
CACHE_RELATION = "refiner.refinement_cache"
RECOMPUTATION_TEST = "assert_refinement_cache_matches_recomputation"
FINGERPRINT_NODE = "int_cache_inputs_fingerprinted"  # the cache's inputs, per jurisdiction (upstream)


class BenchError(RefineryError):
    """A step of the benchmark failed (the message names the step)."""


@dataclass
class DbtTiming:
    """One dbt invocation: wall seconds, the cache node's execution_time, every node's time
    and when each node ran (seconds since the epoch, from its compile start to its execute end)."""

    args: list[str]
    wall_s: float
    nodes: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def cache_node_s(self) -> float | None:
        return self.node_s(CACHE_NODE, "model")

    def unique_id(self, name: str, resource_type: str) -> str | None:
        """The unique_id of the `resource_type` node (model, test...) called `name`, if it ran."""
        return next(
            (
                unique_id
                for unique_id in self.nodes
                if unique_id.startswith(f"{resource_type}.") and unique_id.rsplit(".", 1)[-1] == name
            ),
            None,
        )

    def node_s(self, name: str, resource_type: str) -> float | None:
        """The execution_time of that node, if it ran."""
        unique_id = self.unique_id(name, resource_type)
        return None if unique_id is None else self.nodes[unique_id]

    def around_node(self, name: str, resource_type: str) -> tuple[float, float] | None:
        """The invocation's node span split at one node: seconds from the first node's start
        to that node's start, and from that node's end to the last node's end (None when it
        did not run or its timings are missing)."""
        span = self.spans.get(self.unique_id(name, resource_type) or "")
        if span is None:
            return None
        first = min(start for start, _ in self.spans.values())
        last = max(end for _, end in self.spans.values())
        return span[0] - first, last - span[1]

    def slowest(self, count: int = 5) -> list[tuple[str, float]]:
        return sorted(self.nodes.items(), key=lambda item: item[1], reverse=True)[:count]


@dataclass
class LoadTiming:
    wall_s: float
    bytes: int
    records: int
    inserted: int

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1_000_000 / self.wall_s if self.wall_s > 0 else 0.0


def load_tes(paths: Sequence[Path], settings: DatabaseSettings) -> LoadTiming:
    from loaders.land.tes import load_tes as land_tes

    started = time.perf_counter()
    result = land_tes(list(paths), settings)
    wall = time.perf_counter() - started
    return LoadTiming(wall, result.bytes, result.records, result.inserted)


def load_configurations(file: Path, settings: DatabaseSettings) -> LoadTiming:
    from loaders.land.configurations import load_configurations as land_configurations

    started = time.perf_counter()
    result = land_configurations(file, settings)
    wall = time.perf_counter() - started
    return LoadTiming(wall, result.bytes, result.records, result.inserted)


def dbt(args: Sequence[str], settings: DatabaseSettings) -> DbtTiming:
    """Run dbt in-process; fail loudly (with the failing nodes) when it does not succeed."""
    started = time.perf_counter()
    outcome = refinery_dbt.run(["--quiet", *args], settings)
    wall = time.perf_counter() - started
    results = refinery_dbt.run_results()
    timing = DbtTiming(list(args), wall)
    for item in results.get("results", []):
        timing.nodes[item["unique_id"]] = float(item.get("execution_time") or 0.0)
        timing.statuses[item["unique_id"]] = str(item.get("status"))
        span = _span(item.get("timing") or [])
        if span is not None:
            timing.spans[item["unique_id"]] = span
    if outcome.exit_code != 0:
        failed = [
            f"{uid} ({status})"
            for uid, status in timing.statuses.items()
            if status in ("error", "fail", "runtime error")
        ]
        detail = ", ".join(failed[:8]) or str(getattr(outcome.result, "exception", "") or "")
        raise BenchError(f"dbt {' '.join(args)} exited {outcome.exit_code}: {detail}")
    return timing


def _span(steps: Sequence[dict[str, Any]]) -> tuple[float, float] | None:
    """When a node ran, from run_results' `timing` (compile, then execute): its first start and
    last end, in seconds since the epoch; None for nodes without timings (e.g. exposures)."""
    stamps = [(step.get("started_at"), step.get("completed_at")) for step in steps]
    stamps = [(start, end) for start, end in stamps if start and end]
    if not stamps:
        return None
    return (
        min(datetime.fromisoformat(start).timestamp() for start, _ in stamps),
        max(datetime.fromisoformat(end).timestamp() for _, end in stamps),
    )


# what a full `refinery build` runs (refinery/build_plan.py, plans `all` and `full_refresh`): the
# check of the rows a configurations-only build wrote is left out, the full recomputation covers it
BUILD_ARGS = ("build", "--exclude", f"tag:{WRITTEN_ROWS_TAG}")


def build(settings: DatabaseSettings) -> DbtTiming:
    """`refinery build` on a fresh database: the raw schema exists (`refinery db init` made it),
    then the `dbt build` of the plan `all`."""
    return dbt(list(BUILD_ARGS), settings)


def refresh_cache(settings: DatabaseSettings) -> DbtTiming:
    """The cache node and what it reads (so upstream tables see the change), no tests."""
    return dbt(["run", "--select", f"+{CACHE_NODE}"], settings)


def rebuild_cache(settings: DatabaseSettings) -> DbtTiming:
    """The cache node alone, rebuilt from scratch (`--full-refresh`): the trigger design's
    configuration phase is likewise measured on its own."""
    return dbt(["run", "--select", CACHE_NODE, "--full-refresh"], settings)


def gin_index_s(settings: DatabaseSettings) -> float:
    """The GIN index on aggregated_codes that issue #6 requires, built once more on the finished
    cache in a transaction that is rolled back: what that index alone adds to a full build
    (the trigger design has no such index)."""
    with connection.connect(settings) as conn, conn.transaction(force_rollback=True):
        started = time.perf_counter()
        conn.execute(f"create index on {CACHE_RELATION} using gin (aggregated_codes)")
        return time.perf_counter() - started


def parse_s(settings: DatabaseSettings) -> float:
    """dbt's full parse of the project, which the first build on a fresh database pays inside
    its wall time (dbt's partial parse is keyed by the connection, database name included)."""
    (refinery_dbt.target_path() / "partial_parse.msgpack").unlink(missing_ok=True)
    return dbt(["parse"], settings).wall_s


def cache_keys(settings: DatabaseSettings) -> set[tuple[str, str]]:
    with connection.connect(settings) as conn:
        rows = conn.execute(f"select snomed_code, jurisdiction_id from {CACHE_RELATION}").fetchall()
    return {(str(s), str(j)) for s, j in rows}


def cache_codes(settings: DatabaseSettings) -> dict[tuple[str, str], set[str]]:
    with connection.connect(settings) as conn:
        rows = conn.execute(
            f"select snomed_code, jurisdiction_id, aggregated_codes from {CACHE_RELATION}"
        ).fetchall()
    return {(str(s), str(j)): set(codes) for s, j, codes in rows}


PROJECT_PARTS = (
    "dbt_project.yml",
    "profiles.yml.example",
    "profiles.yml",
    "models",
    "macros",
    "seeds",
    "snapshots",
    "analyses",
    "tests/dbt",
)


def snapshot_project(
    dest: Path, extra_jurisdictions: Sequence[str] = (), *, working_tree: bool = False
) -> Path:
    """A copy of the dbt project to benchmark: the committed HEAD (reproducible, and stable while
    others edit the working tree) or, with `working_tree`, the files as they are now. The large
    scale appends its synthetic jurisdictions to the copy's seed, the way docs/loading.md tells
    operators to add local ones (it has 500; the seed lists 56)."""
    root = project_root()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if working_tree or not _export_head(root, dest):
        for part in PROJECT_PARTS:
            source = root / part
            if source.is_dir():
                shutil.copytree(source, dest / part)
            elif source.exists():
                shutil.copy2(source, dest / part)
    seed = dest / "seeds" / "jurisdictions.csv"
    if extra_jurisdictions:
        states = [ident for ident, _, state in jurisdictions(seed) if state == ident]
        with seed.open("a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            for number, ident in enumerate(extra_jurisdictions):
                writer.writerow(
                    [ident, f"Synthetic local health department {ident}", states[number % len(states)]]
                )
    return dest


def _export_head(root: Path, dest: Path) -> bool:
    """`git archive HEAD` of the project's dbt files into `dest`; False when git cannot."""
    import subprocess
    import tarfile

    tracked = subprocess.run(
        ["git", "ls-files", "--", *PROJECT_PARTS], cwd=root, capture_output=True, text=True, check=False
    )
    if tracked.returncode != 0 or not tracked.stdout.strip():
        return False
    archive = dest / ".head.tar"
    done = subprocess.run(
        [
            "git",
            "archive",
            "--format=tar",
            "-o",
            str(archive),
            "HEAD",
            "--",
            *[p for p in PROJECT_PARTS if (root / p).exists()],
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return False
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return (dest / "dbt_project.yml").exists()


def uncommitted_project_changes() -> bool | None:
    """Whether the dbt project files differ from the git commit (None when git is unavailable)."""
    import subprocess

    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--", *PROJECT_PARTS],
            cwd=project_root(),
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return bool(done.stdout.strip())


def jurisdictions(seed: Path | None = None) -> list[tuple[str, str, str | None]]:
    """The project's jurisdictions (its dbt seed), so the trigger design gets the same ones."""
    path = seed or project_root() / "seeds" / "jurisdictions.csv"
    if not path.exists():
        raise BenchError(f"no jurisdictions seed at {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [_jurisdiction_row(row) for row in rows]


def _jurisdiction_row(row: dict[str, Any]) -> tuple[str, str, str | None]:
    ident = row.get("jurisdiction_id") or row.get("id") or row.get("routing_code")
    if ident is None:
        ident = next(iter(row.values()))
    name = row.get("name") or row.get("jurisdiction_name") or str(ident)
    state = row.get("state_code") or None
    return str(ident), str(name), state
