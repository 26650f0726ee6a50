"""Idempotency: fetch, load and build each run twice in a row; the second run changes nothing.

Compared after the first and the second round: the fetched files' bytes and mtimes, and the md5
of every row of every table in `raw` and in the dbt schemas. Only bookkeeping may move: each
load adds its own `raw.loads` row (with nothing inserted), and a configurations snapshot is
rewritten with the new load's `load_id` (it is a full replacement by design); both are checked
separately.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from refinery import cli, synthetic
from refinery.connection import DatabaseSettings
from refinery.testing.fake_tes import FakeTES
from tests.reliability._helpers import (
    REFINER_SCHEMAS,
    connect,
    folder_state,
    query,
    refinery,
    synthetic_inputs,
    table_hashes,
)

KEY = "idempotency-key"
SPEC = synthetic.SyntheticSpec(seed=9, conditions=30, jurisdictions=3, configurations_per_jurisdiction=20)


def _configurations_without_load_id(settings: DatabaseSettings) -> str:
    with connect(settings) as conn:
        return conn.execute(
            "select md5(coalesce(string_agg((to_jsonb(c) - 'load_id')::text, E'\\n'"
            " order by c.id), '')) from raw.configurations as c"
        ).fetchone()[0]


def _round(settings: DatabaseSettings, tes: FakeTES, out: Path, configurations: Path) -> list[str]:
    """fetch, load tes, load configurations, build; the CLI's stdout lines."""
    assert cli.main(["fetch", "--out", str(out), "--base-url", tes.base_url]) == 0
    printed = []
    for args in (["load", "tes", str(out)], ["load", "configurations", str(configurations)], ["build"]):
        result = refinery(args, settings, timeout=600)
        assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-2000:])
        printed.append(result.stdout)
    return printed


def test_fetch_load_build_twice_the_second_round_changes_nothing(
    module_database: DatabaseSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TES_API_KEY", KEY)
    settings = module_database
    _, configurations = synthetic_inputs(tmp_path / "synthetic", seed=SPEC.seed)
    out = tmp_path / "tes"
    with FakeTES(synthetic.generate_valuesets(SPEC), page_cap=100, api_key=KEY) as tes:
        _round(settings, tes, out, configurations)
        files_first = folder_state(out)
        raw_first = table_hashes(settings, ("raw",), exclude=("raw.loads", "raw.configurations"))
        configurations_first = _configurations_without_load_id(settings)
        refiner_first = table_hashes(settings, REFINER_SCHEMAS)
        loads_first = query(settings, "select count(*) from raw.loads")[0][0]
        capsys.readouterr()

        printed = _round(settings, tes, out, configurations)

    assert "no changes" in capsys.readouterr().out
    assert folder_state(out) == files_first  # same bytes, same mtimes
    assert table_hashes(settings, ("raw",), exclude=("raw.loads", "raw.configurations")) == raw_first
    assert _configurations_without_load_id(settings) == configurations_first
    refiner_second = table_hashes(settings, REFINER_SCHEMAS)
    changed = sorted(name for name in refiner_first if refiner_first[name] != refiner_second.get(name))
    assert changed == [], f"a second build changed {changed}"
    assert set(refiner_second) == set(refiner_first)
    assert len(refiner_first) >= 10 and refiner_first["refiner.refinement_cache"][0] > 0
    second_loads = query(
        settings,
        "select kind, status, inserted_count, unchanged_count from raw.loads"
        " where load_id > %s order by load_id",
        (0,),
    )[loads_first:]
    assert [row[:3] for row in second_loads] == [("tes", "succeeded", 0), ("configurations", "succeeded", 0)]
    assert second_loads[0][3] > 0
    assert "0 inserted" in printed[0]
