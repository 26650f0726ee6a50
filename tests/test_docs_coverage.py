"""Every model and every column it really has is described in the generated docs.

`refinery build` on an empty database creates every relation and writes the manifest; the columns
PostgreSQL reports for each model's relation must each carry a description in the manifest (a
column missing from the YAML has none), and so must the model itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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
