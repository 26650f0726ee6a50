"""`refinery load configurations`: JSON and CSV snapshots, full replacement, refusals.

The write strategy (only changed rows written) is tested in tests/test_load_configurations_diff.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loaders.land.configurations import load_configurations
from refinery import cli
from refinery.connection import DatabaseSettings
from tests._land_helpers import TES, failed_loads, fingerprint, query


def config(id_: Any = 1, **fields: Any) -> dict[str, Any]:
    record = {
        "id": id_,
        "jurisdiction_id": "CA",
        "child_grouper_url": f"{TES}/rs-grouper-840539006",
        "child_grouper_version": "20250328",
    }
    record.update(fields)
    return record


def write(path: Path, records: Any) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def rows(settings: DatabaseSettings) -> list[tuple[Any, ...]]:
    return query(
        settings,
        "select id, jurisdiction_id, child_grouper_url, child_grouper_version, display_name_override,"
        " version, loinc_codes, snomed_codes, icd10_codes, rxnorm_codes, is_active, created_by,"
        " created_at, updated_at, load_id from raw.configurations order by id",
    )


def test_json_snapshot_with_defaults(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    file = write(
        tmp_path / "configurations.json",
        [
            config(1),
            config(
                2,
                jurisdiction_id="SDDH",
                display_name_override="COVID (San Diego)",
                version=3,
                loinc_codes=["94500-6", "94309-2"],
                snomed_codes=["840539006"],
                icd10_codes=["U07.1"],
                rxnorm_codes=["2468231"],
                is_active=True,
                created_by="jane@example.org",
                created_at="2025-01-06T08:00:00Z",
                updated_at="2025-02-01T09:30:00+01:00",
            ),
        ],
    )
    result = load_configurations(file, fresh_database)
    first, second = rows(fresh_database)
    assert first[4:13] == (None, 1, [], [], [], [], False, None, None)
    assert first[13] is not None and first[14] == result.load_id  # updated_at defaults to load time
    (started,) = query(
        fresh_database, "select started_at from raw.loads where load_id = %s", (result.load_id,)
    )[0]
    assert abs((first[13] - started).total_seconds()) < 60
    assert second[1:13] == (
        "SDDH",
        f"{TES}/rs-grouper-840539006",
        "20250328",
        "COVID (San Diego)",
        3,
        ["94500-6", "94309-2"],
        ["840539006"],
        ["U07.1"],
        ["2468231"],
        True,
        "jane@example.org",
        datetime(2025, 1, 6, 8, 0, tzinfo=UTC),
    )
    assert second[13] == datetime(2025, 2, 1, 8, 30, tzinfo=UTC)
    assert (result.inserted, result.records) == (2, 2)


def test_csv_snapshot_with_semicolon_and_json_array_cells(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    file = tmp_path / "configurations.csv"
    file.write_text(
        "id,jurisdiction_id,child_grouper_url,child_grouper_version,loinc_codes,snomed_codes,is_active,"
        "created_at\n"
        '7,CA,https://x/rs-grouper-1,1,94500-6; 94309-2,"[""840539006"", ""a;b""]",true,\n'
        "8,NY,https://x/rs-grouper-2,2,,,,2025-01-06T08:00:00Z\n",
        encoding="utf-8",
    )
    load_configurations(file, fresh_database)
    found = rows(fresh_database)
    assert [(r[0], r[1], r[6], r[7], r[10], r[12]) for r in found] == [
        (7, "CA", ["94500-6", "94309-2"], ["840539006", "a;b"], True, None),
        (8, "NY", [], [], False, datetime(2025, 1, 6, 8, 0, tzinfo=UTC)),
    ]


def test_snapshot_replaces_everything(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    load_configurations(write(tmp_path / "a.json", [config(1), config(2), config(3)]), fresh_database)
    second = load_configurations(
        write(tmp_path / "b.json", [config(2, is_active=True), config(4)]), fresh_database
    )
    assert [(r[0], r[10], r[14]) for r in rows(fresh_database)] == [
        (2, True, second.load_id),
        (4, False, second.load_id),
    ]
    assert (second.inserted, second.updated, second.unchanged, second.deleted) == (1, 1, 0, 2)
    empty = load_configurations(write(tmp_path / "c.json", []), fresh_database)
    assert rows(fresh_database) == [] and empty.deleted == 2


BAD = {
    "duplicate id": ([config(1), config(2), config(1)], "record 2 (id 1): duplicate id, also record 0"),
    "missing id": ([config(1), {k: v for k, v in config(5).items() if k != "id"}], "record 1: missing id"),
    "missing jurisdiction": ([config(1, jurisdiction_id=None)], "record 0 (id 1): missing jurisdiction_id"),
    "empty child url": ([config(1, child_grouper_url=" ")], "record 0 (id 1): missing child_grouper_url"),
    "missing child version": (
        [{k: v for k, v in config(3).items() if k != "child_grouper_version"}],
        "record 0 (id 3): missing child_grouper_version",
    ),
    "id as text": ([config("1")], "record 0 (id 1): id must be an integer, got a string"),
    "boolean id": ([config(True)], "id must be an integer, got a boolean"),
    "numeric version string": (
        [config(1, child_grouper_version=20250328)],
        "child_grouper_version must be a string",
    ),
    "codes not a list": ([config(1, loinc_codes="94500-6")], "loinc_codes must be a list of strings"),
    "code not a string": (
        [config(1, snomed_codes=[840539006])],
        "snomed_codes[0] must be a non-empty string",
    ),
    "is_active as text": ([config(1, is_active="yes")], "is_active must be true or false"),
    "bad timestamp": ([config(1, created_at="yesterday")], "created_at is not an ISO 8601 timestamp"),
    "id too large": ([config(2**63)], "does not fit in a 64-bit integer"),
    "version too large": ([config(1, version=2**31)], "version 2147483648 does not fit in a 32-bit integer"),
    "unknown field": ([config(1, colour="red")], "unknown field(s) colour"),
    "NUL": ([config(1, display_name_override="a\u0000b")], "NUL"),
    "not a list": ({"configurations": []}, "expected a JSON list of configurations"),
    "not an object": ([config(1), 5], "record 1: not an object"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_snapshot_is_refused_and_changes_nothing(
    case: str,
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    use_database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    records, expected = BAD[case]
    use_database(fresh_database)
    load_configurations(write(tmp_path / "good.json", [config(1), config(2)]), fresh_database)
    before = fingerprint(fresh_database)
    bad = write(tmp_path / "bad.json", records)

    code = cli.main(["load", "configurations", str(bad)])

    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err
    assert str(bad) in err and expected in err
    assert fingerprint(fresh_database) == before
    assert [kind for kind, _ in failed_loads(fresh_database)] == ["configurations"]


def test_bad_csv_and_invalid_json(
    fresh_database: DatabaseSettings, tmp_path: Path, use_database, capsys: pytest.CaptureFixture[str]
) -> None:
    use_database(fresh_database)
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("id,jurisdiction_id,child_grouper_url\n1,CA,u\n", encoding="utf-8")
    assert cli.main(["load", "configurations", str(csv_file)]) == 3
    assert "lacks column(s) child_grouper_version" in capsys.readouterr().err
    csv_file.write_text(
        "id,jurisdiction_id,child_grouper_url,child_grouper_version\nx1,CA,u,1\n", encoding="utf-8"
    )
    assert cli.main(["load", "configurations", str(csv_file)]) == 3
    assert "record 0 (id x1): id must be an integer" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": 1,', encoding="utf-8")
    assert cli.main(["load", "configurations", str(broken)]) == 3
    assert f"{broken}: invalid JSON" in capsys.readouterr().err
    assert query(fresh_database, "select count(*) from raw.configurations") == [(0,)]
