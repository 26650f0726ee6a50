"""`refinery sync`: fetch (fake TES) → load what changed → build, one JSON line per step, exit codes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loaders.errors import BuildFailedError, ConfigurationError, UpstreamError
from loaders.land import lock
from refinery import cli, synthetic
from refinery.commands.sync import StepLog, SyncOptions, sync
from refinery.connection import DatabaseSettings
from refinery.testing.fake_tes import FakeTES, Fault
from tests._land_helpers import query, write_json

KEY = "sync-test-key"
SPEC = synthetic.SyntheticSpec(seed=5, conditions=12, jurisdictions=1, configurations_per_jurisdiction=4)
SEED_ONLY = ("build", "--select", "jurisdictions", "--indirect-selection", "cautious")  # fast, real


@pytest.fixture(scope="module")
def valuesets() -> list[dict[str, Any]]:
    return synthetic.generate_valuesets(SPEC)


@pytest.fixture
def tes_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TES_RETRIES", "1")
    monkeypatch.setenv("TES_BACKOFF_FACTOR", "0.01")
    monkeypatch.setenv("TES_BACKOFF_JITTER", "0.01")
    monkeypatch.setenv("TES_READ_TIMEOUT", "2")
    monkeypatch.delenv("TES_API_KEY", raising=False)
    monkeypatch.delenv("TES_API_URL", raising=False)
    yield


def _run(
    settings: DatabaseSettings, options: SyncOptions
) -> tuple[list[dict[str, Any]], BaseException | None]:
    stream = io.StringIO()
    error: BaseException | None = None
    try:
        sync(settings, options, log=StepLog("test-run", stream))
    except Exception as exc:
        error = exc
    return [json.loads(line) for line in stream.getvalue().splitlines()], error


def _steps(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(line["step"], line["status"]) for line in lines]


def test_fetch_load_build_then_an_unchanged_rerun(
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    valuesets: list[dict[str, Any]],
    tes_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tes_dir = tmp_path / "tes-data"
    configurations = write_json(
        tmp_path / "configurations.json", synthetic.generate_configurations(SPEC, valuesets)
    )
    options = SyncOptions(tes_dir, configurations, lock_timeout=5, build_args=SEED_ONLY)
    with FakeTES(valuesets, page_cap=50, api_key=KEY) as tes:
        monkeypatch.setenv("TES_API_KEY", KEY)
        monkeypatch.setenv("TES_API_URL", tes.base_url)
        lines, error = _run(fresh_database, options)
    assert error is None, error
    assert _steps(lines) == [
        ("lock", "ok"),
        ("fetch", "ok"),
        ("load_tes", "ok"),
        ("load_configurations", "ok"),
        ("build", "ok"),
        ("sync", "ok"),
    ]
    assert {line["run_id"] for line in lines} == {"test-run"}
    assert all(isinstance(line["seconds"], float | int) for line in lines)
    by_step = {line["step"]: line for line in lines}
    kept = by_step["fetch"]["kept"]
    assert kept > 0 and by_step["load_tes"]["inserted"] == kept
    assert by_step["load_configurations"]["records"] == len(json.loads(configurations.read_text()))
    assert by_step["build"]["dbt_exit_code"] == 0
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(kept,)]
    assert query(fresh_database, "select count(*) from refiner.jurisdictions") == [(56,)]
    assert KEY not in json.dumps(lines)

    # no key: no fetch; the files were loaded by the latest TES load, so nothing is re-read
    monkeypatch.delenv("TES_API_KEY")
    lines, error = _run(fresh_database, SyncOptions(tes_dir, None, lock_timeout=5, build_args=SEED_ONLY))
    assert error is None, error
    assert _steps(lines) == [
        ("lock", "ok"),
        ("fetch", "skipped"),
        ("load_tes", "unchanged"),
        ("load_configurations", "skipped"),
        ("build", "ok"),
        ("sync", "ok"),
    ]
    assert query(fresh_database, "select count(*) from raw.loads where kind = 'tes'") == [(1,)]

    # one changed file: the folder is loaded again as one set; only the changed content is new
    changed = sorted(p for p in tes_dir.glob("reporting_spec_grouper_*.json"))[0]
    document = json.loads(changed.read_text())
    document["valuesets"][0]["title"] = "changed title"
    changed.write_text(json.dumps(document), encoding="utf-8")
    lines, error = _run(fresh_database, SyncOptions(tes_dir, None, lock_timeout=5, build_args=SEED_ONLY))
    assert error is None, error
    load_line = {line["step"]: line for line in lines}["load_tes"]
    assert (load_line["status"], load_line["changed_files"], load_line["inserted"]) == ("ok", 1, 1)
    assert load_line["files"] == by_step["load_tes"]["files"]
    assert load_line["unchanged"] == kept - 1
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(kept + 1,)]

    # and the next run skips every file again
    lines, error = _run(fresh_database, SyncOptions(tes_dir, None, lock_timeout=5, build_args=SEED_ONLY))
    assert error is None, error
    assert {line["step"]: line["status"] for line in lines}["load_tes"] == "unchanged"


def test_lock_busy_exits_4_with_a_failed_line(
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    use_database,
    capsys: pytest.CaptureFixture[str],
    tes_env: None,
) -> None:
    use_database(fresh_database)
    with lock.hold(fresh_database, 1):
        code = cli.main(["sync", "--tes-dir", str(tmp_path), "--lock-timeout", "0.3"])
    printed = capsys.readouterr()
    lines = [json.loads(line) for line in printed.out.splitlines()]
    assert code == 4
    assert _steps(lines) == [("lock", "failed"), ("sync", "failed")]
    assert lines[0]["exit_code"] == 4 and "another load is running" in lines[0]["error"]
    assert "another load is running" in printed.err


def test_bad_input_exits_3_and_skips_the_build(
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    use_database,
    capsys: pytest.CaptureFixture[str],
    tes_env: None,
) -> None:
    use_database(fresh_database)
    tes_dir = tmp_path / "tes"
    tes_dir.mkdir()
    (tes_dir / "broken.json").write_text('{"valuesets": [', encoding="utf-8")
    code = cli.main(["sync", "--tes-dir", str(tes_dir)])
    printed = capsys.readouterr()
    lines = [json.loads(line) for line in printed.out.splitlines()]
    assert code == 3
    assert _steps(lines) == [("lock", "ok"), ("fetch", "skipped"), ("load_tes", "failed"), ("sync", "failed")]
    assert "broken.json" in lines[2]["error"] and lines[2]["exit_code"] == 3
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(0,)]
    assert cli.main(["sync", "--tes-dir", str(tmp_path / "missing")]) == 3
    assert "no TES folder" in capsys.readouterr().err


def test_upstream_failure_exits_5_and_leaves_the_folder(
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    valuesets: list[dict[str, Any]],
    tes_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tes_dir = tmp_path / "tes-data"
    write_json(tes_dir / "keep.json", [valuesets[0]])
    before = (tes_dir / "keep.json").read_bytes()
    with FakeTES(valuesets, api_key=KEY, always=Fault.status(503)) as tes:
        monkeypatch.setenv("TES_API_KEY", KEY)
        monkeypatch.setenv("TES_API_URL", tes.base_url)
        lines, error = _run(fresh_database, SyncOptions(tes_dir, None, lock_timeout=5, build_args=SEED_ONLY))
    assert isinstance(error, UpstreamError) and error.exit_code == 5
    assert _steps(lines) == [("lock", "ok"), ("fetch", "failed"), ("sync", "failed")]
    assert lines[1]["exit_code"] == 5
    assert (tes_dir / "keep.json").read_bytes() == before
    with lock.hold(fresh_database, 0):  # released after the failure
        pass


def test_build_failure_exits_6(
    fresh_database: DatabaseSettings, tmp_path: Path, valuesets: list[dict[str, Any]], tes_env: None
) -> None:
    tes_dir = tmp_path / "tes-data"
    write_json(tes_dir / "one.json", [valuesets[0]])
    broken_build = ("build", "--select", "jurisdictions", "--vars", "{not: [valid")
    lines, error = _run(fresh_database, SyncOptions(tes_dir, None, lock_timeout=5, build_args=broken_build))
    assert isinstance(error, BuildFailedError) and error.exit_code == 6
    assert _steps(lines)[-2:] == [("build", "failed"), ("sync", "failed")]
    assert lines[-2]["exit_code"] == 6
    # the load before the build is committed; the next sync rebuilds
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(1,)]


def test_a_failed_build_skips_the_export(
    fresh_database: DatabaseSettings, tmp_path: Path, valuesets: list[dict[str, Any]], tes_env: None
) -> None:
    tes_dir = tmp_path / "tes-data"
    write_json(tes_dir / "one.json", [valuesets[0]])
    broken_build = ("build", "--select", "jurisdictions", "--vars", "{not: [valid")
    out = tmp_path / "export"
    options = SyncOptions(tes_dir, None, lock_timeout=5, build_args=broken_build, export_dir=out)
    lines, error = _run(fresh_database, options)
    assert isinstance(error, BuildFailedError) and error.exit_code == 6
    assert _steps(lines)[-2:] == [("build", "failed"), ("sync", "failed")]
    assert "export" not in [step for step, _status in _steps(lines)]
    assert not out.exists()


def test_a_failed_export_fails_the_run_with_its_exit_code(
    fresh_database: DatabaseSettings, tmp_path: Path, valuesets: list[dict[str, Any]], tes_env: None
) -> None:
    tes_dir = tmp_path / "tes-data"
    write_json(tes_dir / "one.json", [valuesets[0]])
    out = tmp_path / "export"
    # the seed-only build succeeds but builds no payload versions: the export step fails (exit 2)
    options = SyncOptions(tes_dir, None, lock_timeout=5, build_args=SEED_ONLY, export_dir=out)
    lines, error = _run(fresh_database, options)
    assert isinstance(error, ConfigurationError) and error.exit_code == 2
    assert _steps(lines)[-3:] == [("build", "ok"), ("export", "failed"), ("sync", "failed")]
    assert lines[-2]["exit_code"] == 2 and "refinery build" in lines[-2]["error"]
    assert "\n" not in lines[-2]["error"]
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(1,)], "the load stays"
