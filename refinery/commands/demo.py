"""`refinery demo`: init → synthetic TES data → load → build → summary, on whatever database
resolves (the embedded server by default)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from refinery import connection, dbinit, dbt
from refinery.paths import state_dir


def run(args: argparse.Namespace) -> int:
    from loaders.land.configurations import load_configurations
    from loaders.land.tes import load_tes
    from refinery.commands import check
    from refinery.synthetic import SyntheticSpec, generate

    console = Console(highlight=False)
    started = time.perf_counter()
    settings = connection.resolve()
    console.print(f"[bold]database[/]  {settings.describe()}")
    console.print(f"[bold]init[/]      {dbinit.init(settings).describe()}")

    out: Path = args.out or state_dir() / "demo"
    spec = SyntheticSpec(seed=args.seed, jurisdictions=args.jurisdictions)
    with console.status("generating synthetic TES data"):
        summary = generate(out, spec)
    counts = ", ".join(f"{value} {key}" for key, value in summary.counts.items())
    console.print(f"[bold]generated[/] {counts} → {out}")

    with console.status("loading TES ValueSets into raw"):
        tes = load_tes([summary.tes_dir], settings)
    console.print(f"[bold]loaded[/]    TES: {tes.describe()}")
    with console.status("loading configurations into raw"):
        configurations = load_configurations(summary.configurations_file, settings)
    console.print(f"[bold]loaded[/]    configurations: {configurations.describe()}")

    console.rule("dbt build")
    # everything (the full recomputation included; the check of the rows the latest build wrote,
    # tag written_rows, would repeat part of it)
    outcome = dbt.run(["build", "--exclude", "tag:written_rows"], settings)
    console.rule()
    results = check.test_results(dbt.run_results())
    render_summary(console, results, check.row_counts(settings, dbt.target_schema()))
    verdict = "[bold green]demo done[/]" if outcome.exit_code == 0 else "[bold red]dbt build failed[/]"
    console.print(f"{verdict} in {time.perf_counter() - started:.1f} s")
    return outcome.exit_code


def render_summary(console: Console, results: list, counts: dict[str, int | None]) -> None:
    """Row counts of the serving tables, then the sanity checks: totals and any that did not pass."""
    from collections import Counter

    from rich.table import Table

    tables = Table(title="Serving tables")
    tables.add_column("Table")
    tables.add_column("Rows", justify="right")
    for table, count in counts.items():
        tables.add_row(table, "missing" if count is None else f"{count:,}")
    console.print(tables)

    by_status = Counter(result.status for result in results)
    checks = Table(title=f"Sanity checks: {len(results)} dbt tests")
    checks.add_column("Status")
    checks.add_column("Checks", justify="right")
    checks.add_column("Which (failing rows)")
    for status in ("pass", "warn", "fail", "error", "skipped"):
        if not by_status.get(status):
            continue
        named = [r for r in results if r.status == status] if status != "pass" else []
        which = ", ".join(f"{r.name} ({r.failures})" for r in named[:6])
        if len(named) > 6:
            which += f", … {len(named) - 6} more"
        checks.add_row(status.upper(), str(by_status[status]), which)
    console.print(checks)
