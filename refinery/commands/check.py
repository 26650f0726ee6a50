"""`refinery check`: the sanity checks (every dbt test) as a table, plus serving-table row counts.

Like the original `check_seeded_db.py`, but the checks are the project's dbt tests: each one with
its status and failing rows. Exit 1 when a test of severity error fails (or dbt errors); tests of
severity warn are shown but do not fail the command.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from rich.console import Console
from rich.table import Table

from refinery import connection, dbt

SERVING_TABLES = (
    "tes_condition_groupers",
    "tes_reporting_spec_groupers",
    "tes_additional_context_groupers",
    "tes_condition_grouper_references",
    "configurations",
    "refinement_cache",
)
FAILING_STATUSES = {"fail", "error"}


@dataclass(frozen=True)
class CheckResult:
    """One dbt test's outcome."""

    name: str
    status: str  # pass, warn, fail, error, skipped
    failures: int | None
    message: str


def test_results(run_results: Mapping[str, Any]) -> list[CheckResult]:
    """The test nodes of a `run_results.json` document, in name order."""
    results = []
    for node in run_results.get("results", []):
        unique_id = str(node.get("unique_id", ""))
        if not unique_id.startswith(("test.", "unit_test.")):
            continue
        results.append(
            CheckResult(
                name=unique_id.split(".")[2] if unique_id.count(".") >= 2 else unique_id,
                status=str(node.get("status", "")),
                failures=node.get("failures"),
                message=str(node.get("message") or ""),
            )
        )
    return sorted(results, key=lambda result: result.name)


def failed(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Checks that make the command fail (warns do not)."""
    return [result for result in results if result.status in FAILING_STATUSES]


def row_counts(settings: connection.DatabaseSettings, schema: str) -> dict[str, int | None]:
    """Rows of each serving table (None when the table does not exist yet)."""
    counts: dict[str, int | None] = {}
    with connection.connect(settings, autocommit=True) as conn:
        for table in SERVING_TABLES:
            exists = conn.execute("select to_regclass(%s)", (f"{schema}.{table}",)).fetchone()
            if not exists or exists[0] is None:
                counts[table] = None
                continue
            query = sql.SQL("select count(*) from {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            row = conn.execute(query).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold red"}


def render(console: Console, results: list[CheckResult], counts: Mapping[str, int | None]) -> None:
    checks = Table(title="Sanity checks (dbt tests)")
    checks.add_column("Check")
    checks.add_column("Status")
    checks.add_column("Failing rows", justify="right")
    for result in results:
        style = _STYLE.get(result.status, "")
        failures = "" if result.failures is None else str(result.failures)
        checks.add_row(
            result.name, f"[{style}]{result.status.upper()}[/]" if style else result.status, failures
        )
    console.print(checks)
    summary = Table(title="Table row counts")
    summary.add_column("Table Name")
    summary.add_column("Row Count", justify="right")
    for table, count in counts.items():
        summary.add_row(table, "missing" if count is None else f"{count:,}")
    console.print(summary)


def run(args: argparse.Namespace) -> int:
    import os

    console = Console(highlight=False)
    settings = connection.resolve_build()
    # every test over every row; the check of the rows the latest build wrote (tag written_rows,
    # refinery/build_plan.py) is a subset of the full recomputation, so it is left out
    outcome = dbt.run(["test", "--exclude", "tag:written_rows"], settings)
    results = test_results(dbt.run_results())
    schema = os.environ.get("REFINERY_SCHEMA", "refiner")
    render(console, results, row_counts(settings, schema))
    bad = failed(results)
    warned = [result for result in results if result.status == "warn"]
    if bad or outcome.exit_code == 2:
        names = ", ".join(result.name for result in bad) or "dbt could not run the tests"
        console.print(f"[bold red]{len(bad)} check(s) failed:[/] {names}")
        return 1
    console.print(f"All critical sanity checks passed ({len(results)} checks, {len(warned)} warning(s)).")
    return 0
