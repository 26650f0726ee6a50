"""Concurrency: two loaders at once, a loader during a dbt build, two builds at once.

Documented behaviour (docs/reliability.md):

- Loaders (`load tes`, `load configurations`, `sync`) share one PostgreSQL advisory lock: a
  second loader waits `--lock-timeout` seconds, then exits 4 with one line naming the holder, and
  writes nothing but its 'failed' raw.loads row.
- `refinery build` takes no loader lock. A load may commit while dbt builds: every model is its own
  statement in its own transaction, so each model sees the raw tables either wholly before or
  wholly after the load, never half of it; models built before the commit reflect the old data,
  later ones the new (a test comparing two models may then fail that build). The next build
  brings everything, refinement_cache included, to what a full refresh gives.
- Two builds at once: each model's swap happens in one transaction, so the tables are never
  corrupted; the builds may block each other and one may fail on a catalog conflict. The cache
  afterwards equals a full refresh.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loaders.land.lock import LOAD_LOCK_KEY
from refinery.connection import DatabaseSettings
from tests.reliability._helpers import (
    cache_rows,
    error_lines,
    execute,
    loads,
    mutated_configurations,
    query,
    refinery,
    start_refinery,
    synthetic_inputs,
    table_hashes,
    valueset,
    wait_idle,
    write_json,
)


def _lock_held(settings: DatabaseSettings) -> bool:
    return bool(
        query(
            settings,
            "select count(*) from pg_locks where locktype = 'advisory' and granted"
            " and classid = %s and objid = %s and objsubid = 1"
            " and database = (select oid from pg_database where datname = current_database())",
            (LOAD_LOCK_KEY >> 32, LOAD_LOCK_KEY & 0xFFFFFFFF),
        )[0][0]
    )


def _wait(condition: Any, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return synthetic_inputs(tmp_path_factory.mktemp("synthetic"))


def test_two_loaders_at_once_the_second_exits_4_and_writes_nothing(
    module_database: DatabaseSettings, tmp_path: Path, inputs: tuple[Path, Path]
) -> None:
    settings = module_database
    first_file = write_json(tmp_path / "first.json", [valueset(f"first-{n}") for n in range(10)])
    second_file = write_json(tmp_path / "second.json", [valueset("second")])
    assert (
        refinery(
            ["load", "tes", str(write_json(tmp_path / "seed.json", [valueset("seed")]))], settings
        ).returncode
        == 0
    )
    with psycopg.connect(settings.conninfo()) as blocker:
        # the first loader takes the lock, then waits on this table lock inside its transaction
        blocker.execute("lock table raw.tes_valuesets in share mode")
        first = start_refinery(["load", "tes", str(first_file)], settings)
        _wait(lambda: _lock_held(settings), what="the first loader to take the lock")
        before = table_hashes(settings)
        started = time.monotonic()
        second = refinery(["load", "tes", "--lock-timeout", "1", str(second_file)], settings)
        third = refinery(["load", "configurations", "--lock-timeout", "0", str(inputs[1])], settings)
        waited = time.monotonic() - started
        assert table_hashes(settings) == before
        blocker.rollback()
    _, err = first.communicate(timeout=60)

    for refused in (second, third):
        assert refused.returncode == 4, refused.stderr
        lines = error_lines(refused.stderr)
        assert len(lines) == 1 and "another load is running" in lines[0], refused.stderr
        assert "held by backend pid" in lines[0]
    assert 1 <= waited < 20
    assert first.returncode == 0, err
    stored = query(settings, "select canonical_url from raw.tes_valuesets")
    urls = {row[0].rsplit("/", 1)[1] for row in stored}
    assert urls == {"seed", *(f"first-{n}" for n in range(10))}
    statuses = [(kind, status) for _, kind, status, _ in loads(settings)]
    assert sorted(statuses[-3:]) == [("configurations", "failed"), ("tes", "failed"), ("tes", "succeeded")]
    execute(settings, "truncate raw.tes_valuesets, raw.configurations, raw.rejected_records, raw.loads")


def _configuration_ids(path: Path) -> list[int]:
    return sorted(int(record["id"]) for record in json.loads(path.read_text()))


def test_a_load_during_a_build_each_model_sees_all_or_nothing_of_it(
    module_database: DatabaseSettings, tmp_path: Path, inputs: tuple[Path, Path]
) -> None:
    settings = module_database
    tes_dir, configurations = inputs
    for args in (["load", "tes", str(tes_dir)], ["load", "configurations", str(configurations)]):
        assert refinery(args, settings).returncode == 0
    changed = mutated_configurations(configurations, tmp_path / "changed.json")

    build = start_refinery(["build"], settings)
    _wait(
        lambda: (
            bool(
                query(
                    settings,
                    "select count(*) from pg_stat_activity where datname = current_database()"
                    ' and query like \'%%"node_id": "model.refinery.%%\'',
                )[0][0]
            )
            or build.poll() is not None
        ),
        timeout=300,
        what="dbt to start a model",
    )
    assert build.poll() is None, "the build ended before a model ran"
    load = refinery(["load", "configurations", str(changed)], settings)
    out, _ = build.communicate(timeout=600)

    assert load.returncode == 0, load.stderr  # a build never blocks a loader
    assert build.returncode in (0, 1), out[-3000:]
    built_ids = sorted(row[0] for row in query(settings, "select id from refiner.configurations"))
    assert built_ids in (_configuration_ids(configurations), _configuration_ids(changed)), (
        "refiner.configurations mixes two snapshots"
    )


def test_two_builds_at_once_then_the_cache_equals_a_full_refresh(
    module_database: DatabaseSettings, tmp_path: Path
) -> None:
    settings = module_database
    builds: list[subprocess.Popen[str]] = []
    for number in range(2):
        env = {
            "DBT_TARGET_PATH": str(tmp_path / f"target{number}"),
            "DBT_LOG_PATH": str(tmp_path / f"logs{number}"),
        }
        builds.append(start_refinery(["build"], settings, env=env))
    outcomes = [(build.wait(timeout=900), build.communicate()[0]) for build in builds]
    codes = sorted(code for code, _ in outcomes)
    print(f"\ntwo builds at once: exit codes {codes}")
    assert 0 in codes, [out[-2000:] for _, out in outcomes]
    assert all(code in (0, 1, 2) for code in codes)
    wait_idle(settings)

    after_both = cache_rows(settings)
    full = refinery(["build", "--full-refresh", "--select", "refinement_cache"], settings, timeout=600)
    assert full.returncode == 0, full.stdout[-3000:]
    assert after_both and after_both == cache_rows(settings)
    assert (
        query(
            settings,
            "select relname from pg_class where relkind in ('r', 'v', 'm')"
            " and (relname like '%%dbt\\_tmp' or relname like '%%dbt\\_backup')",
        )
        == []
    )
