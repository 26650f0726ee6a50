"""Every model and every column it really has is described in the generated docs.

`refinery build` on an empty database creates every relation and writes the manifest; the columns
PostgreSQL reports for each model's relation must each carry a description in the manifest (a
column missing from the YAML has none), and so must the model itself. The public checker
`dbt-coverage` agrees (from `dbt docs generate`'s catalog), and the example query each model's
description gives an analyst runs against the built database.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from refinery import cli, dbt
from refinery.connection import DatabaseSettings
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built_manifest(server: DatabaseSettings) -> Iterator[tuple[DatabaseSettings, dict[str, Any]]]:
    settings = create_database(server, "refinery_docs")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
            patch.delenv(name, raising=False)
        patch.setenv("DATABASE_URL", settings.url(show_password=True))
        try:
            assert cli.main(["build"]) == 0
            manifest = json.loads((dbt.target_path() / "manifest.json").read_text())
            yield settings, manifest
        finally:
            drop_database(server, settings)


def _models(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["package_name"] == "refinery"
    ]


def test_every_model_is_described(built_manifest: tuple[DatabaseSettings, dict[str, Any]]) -> None:
    _, manifest = built_manifest
    models = _models(manifest)
    assert len(models) >= 15, "the project should have its staging, intermediate and mart models"
    undescribed = sorted(node["name"] for node in models if not node["description"].strip())
    assert not undescribed, f"models without a description: {undescribed}"


def test_every_real_column_is_described(
    built_manifest: tuple[DatabaseSettings, dict[str, Any]],
) -> None:
    settings, manifest = built_manifest
    missing: list[str] = []
    checked = 0
    with psycopg.connect(settings.conninfo()) as conn:
        for node in _models(manifest):
            relation = node["alias"] or node["name"]
            columns = [
                row[0]
                for row in conn.execute(
                    """
                    select column_name from information_schema.columns
                    where table_schema = %s and table_name = %s order by ordinal_position
                    """,
                    (node["schema"], relation),
                )
            ]
            assert columns, f"{node['schema']}.{relation} was not built"
            documented = {
                name.lower(): column.get("description", "") for name, column in node["columns"].items()
            }
            for column in columns:
                checked += 1
                if not documented.get(column.lower(), "").strip():
                    missing.append(f"{node['name']}.{column}")
    assert checked > 100
    assert not missing, f"{len(missing)} columns without a description: {missing}"


def test_exposures_point_at_the_cache_and_the_analytics_marts(
    built_manifest: tuple[DatabaseSettings, dict[str, Any]],
) -> None:
    _, manifest = built_manifest
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    app = exposures["ecr_refiner_application"]
    assert app["type"] == "application" and app["description"].strip()
    assert app["depends_on"]["nodes"] == ["model.refinery.refinement_cache"]
    analytics = set(exposures["terminology_analytics"]["depends_on"]["nodes"])
    assert {
        "model.refinery.tes_release_changes",
        "model.refinery.condition_code_summary",
        "model.refinery.jurisdiction_coverage",
        "model.refinery.configuration_history",
    } <= analytics


EXAMPLE_SQL = re.compile(r"```sql\n(.*?)```", re.DOTALL)


def test_every_model_description_has_an_example_query_that_runs(
    built_manifest: tuple[DatabaseSettings, dict[str, Any]],
) -> None:
    settings, manifest = built_manifest
    without: list[str] = []
    failing: list[str] = []
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        for node in _models(manifest):
            examples = EXAMPLE_SQL.findall(node["description"])
            if not examples:
                without.append(node["name"])
            for example in examples:
                try:
                    # the examples name the default schemas (refiner, refiner_staging, ...)
                    conn.execute(example.replace("refiner", dbt.target_schema()))
                except psycopg.Error as error:
                    failing.append(f"{node['name']}: {error}".strip())
    assert not without, f"models whose description has no ```sql example: {without}"
    assert not failing, f"example queries that fail: {failing}"


def test_dbt_coverage_reports_every_column_documented(
    built_manifest: tuple[DatabaseSettings, dict[str, Any]], tmp_path: Path
) -> None:
    """dbt-coverage (PyPI) computes documentation coverage from the catalog `dbt docs generate`
    writes against the real database, and fails under 100%."""
    settings, _ = built_manifest
    assert dbt.run(["docs", "generate"], settings).exit_code == 0
    report = tmp_path / "coverage.json"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt-coverage")),
            "compute",
            "doc",
            "--project-dir",
            str(dbt.project_root()),
            "--run-artifacts-dir",
            str(dbt.target_path()),
            "--cov-report",
            str(report),
            "--cov-fail-under",
            "1.0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    coverage = json.loads(report.read_text())
    assert coverage["covered"] == coverage["total"] > 100
