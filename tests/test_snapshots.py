"""History: snapshots record every change and close deleted records instead of losing them.

Build, then change the inputs (one configuration deactivated, one deleted, one RS grouper
re-published with other codes under the same url and version), build again, and read the
snapshots and configuration_history.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loaders.tes import classify
from refinery import cli
from refinery.connection import DatabaseSettings
from refinery.synthetic import SyntheticSpec, generate
from tests.conftest import create_database, drop_database

SPEC = SyntheticSpec(seed=9, jurisdictions=2, releases=2, conditions=8, configurations_per_jurisdiction=6)
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class History:
    settings: DatabaseSettings
    deactivated: int
    deleted: int
    deleted_key: tuple[str, str]  # its refinement_cache key
    republished: tuple[str, str]  # (url, version) of the RS grouper re-published


def _republish(tes_dir: Path, out: Path) -> tuple[str, str]:
    """A file with one RS grouper of the latest release, its first code system dropped."""
    rs_files = sorted(tes_dir.glob("reporting_spec_grouper_*.json"))
    document = json.loads(rs_files[-1].read_text())
    resource: dict[str, Any] = next(
        vs
        for vs in document["valuesets"]
        if classify.classify(vs) == classify.REPORTING_SPEC_GROUPER and len(vs["compose"]["include"]) > 1
    )
    resource["compose"]["include"] = resource["compose"]["include"][1:]
    out.mkdir()
    (out / rs_files[-1].name).write_text(
        json.dumps({"metadata": document["metadata"], "valuesets": [resource]})
    )
    return resource["url"], resource["version"]


def _rows(settings: DatabaseSettings, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.conninfo()) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def history(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    settings = create_database(server, "refinery_history")
    out = tmp_path_factory.mktemp("synthetic-history")
    summary = generate(out, SPEC)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
            patch.delenv(name, raising=False)
        patch.setenv("DATABASE_URL", settings.url(show_password=True))
        try:
            assert cli.main(["load", "tes", str(summary.tes_dir)]) == 0
            assert cli.main(["load", "configurations", str(summary.configurations_file)]) == 0
            assert cli.main(["build"]) == 0
            counted = _rows(
                settings,
                "select id, snomed_code, jurisdiction_id from refiner.configurations"
                " where is_counted order by id",
            )
            (deactivated, _, _), (deleted, snomed, jurisdiction) = counted[0], counted[1]
            configurations = json.loads(summary.configurations_file.read_text())
            changed = []
            for configuration in configurations:
                if configuration["id"] == deleted:
                    continue
                if configuration["id"] == deactivated:
                    configuration["is_active"] = False
                    configuration["updated_at"] = "2030-01-01T00:00:00Z"
                changed.append(configuration)
            second = out / "configurations-2.json"
            second.write_text(json.dumps(changed))
            republished = _republish(summary.tes_dir, out / "republished")
            assert cli.main(["load", "tes", str(out / "republished")]) == 0
            assert cli.main(["load", "configurations", str(second)]) == 0
            assert cli.main(["build"]) == 0
            yield History(settings, deactivated, deleted, (snomed, jurisdiction), republished)
        finally:
            drop_database(server, settings)


def test_configuration_history_says_what_changed_when(history: History) -> None:
    rows = _rows(
        history.settings,
        """
        select configuration_id, change_type, changed_columns, is_current
        from refiner.configuration_history
        where configuration_id = any(%s) order by configuration_id, version_number
        """,
        [history.deactivated, history.deleted],
    )
    by_id: dict[int, list[tuple[str, list[str], bool]]] = {}
    for configuration_id, change_type, changed_columns, is_current in rows:
        by_id.setdefault(configuration_id, []).append((change_type, changed_columns, is_current))
    assert by_id[history.deactivated] == [
        ("created", [], False),
        ("updated", ["is_active"], True),
    ]
    assert by_id[history.deleted] == [("created", [], False), ("deleted", [], True)]
    untouched = _rows(
        history.settings,
        "select count(*) from refiner.configuration_history where change_type <> 'created'",
    )[0][0]
    assert untouched == 2, "only the two changed configurations have more than one version"


def test_deleted_records_are_closed_not_lost(history: History) -> None:
    [(closed, current)] = _rows(
        history.settings,
        """
        select count(*) filter (where dbt_valid_to is not null),
               count(*) filter (where dbt_valid_to is null)
        from refiner_snapshots.refinement_cache_snapshot
        where snomed_code = %s and jurisdiction_id = %s
        """,
        *history.deleted_key,
    )
    still_cached = _rows(
        history.settings,
        "select count(*) from refiner.refinement_cache where snomed_code = %s and jurisdiction_id = %s",
        *history.deleted_key,
    )[0][0]
    assert still_cached == 0, "the deleted configuration's cache row must be gone"
    assert (closed, current) == (1, 0), "its history must remain, closed"
    [(snapshot_rows, cache_rows)] = _rows(
        history.settings,
        """
        select (select count(*) from refiner_snapshots.refinement_cache_snapshot
                where dbt_valid_to is null),
               (select count(*) from refiner.refinement_cache)
        """,
    )
    assert snapshot_rows == cache_rows


def test_republished_grouper_opens_a_new_history_row(history: History) -> None:
    url, version = history.republished
    rows = _rows(
        history.settings,
        """
        select content_sha256, dbt_valid_to is null
        from refiner_snapshots.tes_reporting_spec_groupers_snapshot
        where canonical_url = %s and version = %s order by dbt_valid_from
        """,
        url,
        version,
    )
    assert len(rows) == 2 and rows[0][0] != rows[1][0]
    assert [current for _, current in rows] == [False, True]
    others = _rows(
        history.settings,
        """
        select count(*) from refiner_snapshots.tes_reporting_spec_groupers_snapshot
        where dbt_valid_to is not null
        """,
    )[0][0]
    assert others == 1, "no other RS grouper changed"


def test_jurisdiction_coverage_adds_up(history: History) -> None:
    configurations = _rows(
        history.settings,
        "select jurisdiction_id, is_counted, exclusion_reason from refiner.configurations",
    )
    cache = _rows(
        history.settings,
        "select jurisdiction_id, count(*) from refiner.refinement_cache group by jurisdiction_id",
    )
    seed = {row[0] for row in _rows(history.settings, "select routing_code from refiner.jurisdictions")}
    expected: dict[str, tuple[int, int, int, dict[str, int], int, bool]] = {}
    for jurisdiction in seed | {row[0] for row in configurations} | {row[0] for row in cache}:
        mine = [row for row in configurations if row[0] == jurisdiction]
        reasons: dict[str, int] = {}
        for _, is_counted, reason in mine:
            if not is_counted:
                reasons[reason] = reasons.get(reason, 0) + 1
        expected[jurisdiction] = (
            len(mine),
            sum(1 for row in mine if row[1]),
            sum(1 for row in mine if not row[1]),
            reasons,
            dict(cache).get(jurisdiction, 0),
            jurisdiction in seed,
        )
    rows = _rows(
        history.settings,
        """
        select jurisdiction_id, configurations_total, configurations_counted,
               configurations_excluded, excluded_by_reason, cache_rows, is_known_jurisdiction
        from refiner.jurisdiction_coverage
        """,
    )
    assert {row[0]: tuple(row[1:]) for row in rows} == expected
    # the deactivated configuration is reported as excluded, for its reason
    assert sum(value[3].get("inactive", 0) for value in expected.values()) >= 1
