"""Faults: a slow TES, a full disk under the fetch staging folder, the database killed or
restarted mid-load and between load and build, a dbt build killed mid-run.

After each fault the next ordinary run recovers with nothing lost and nothing doubled.
(The TES API faults — 429, 5xx, dropped connections, truncated and invalid bodies, loops, 410 —
are covered one by one in tests/test_fetch.py against the same fake server.)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loaders.land.reader import content_sha256
from loaders.tes import files
from refinery import cli, connection, dbinit, embedded, synthetic
from refinery.connection import DatabaseSettings
from refinery.testing.fake_tes import FakeTES, Fault
from tests.conftest import free_port
from tests.reliability._helpers import (
    cache_rows,
    error_lines,
    execute,
    folder_state,
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

KEY = "reliability-key-4e1d"
# the cache, its ancestors, their tests and everything the cache's singular tests read: cheaper builds
CACHE = (
    "--select",
    "+refinement_cache",
    "+assert_refinement_cache_matches_recomputation",
    "+assert_refinement_cache_populated",
    "--indirect-selection",
    "buildable",
)
SPEC = synthetic.SyntheticSpec(seed=5, conditions=25, jurisdictions=1, configurations_per_jurisdiction=5)


@pytest.fixture
def fetch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TES_API_KEY", KEY)
    monkeypatch.delenv("TES_API_URL", raising=False)
    monkeypatch.setenv("TES_RETRIES", "2")
    monkeypatch.setenv("TES_BACKOFF_FACTOR", "0.01")
    monkeypatch.setenv("TES_BACKOFF_JITTER", "0.01")
    monkeypatch.setenv("TES_READ_TIMEOUT", "0.4")


def _revised(valuesets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every ValueSet with another title: every category file changes."""
    return [{**record, "title": f"{record.get('title', '')} (revised {'x' * 200})"} for record in valuesets]


# --- the fetch -------------------------------------------------------------------------------------


def test_a_server_slower_than_the_read_timeout_fails_cleanly_and_touches_nothing(
    fetch_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    valuesets = synthetic.generate_valuesets(SPEC)
    out = tmp_path / "tes"
    with FakeTES(valuesets, page_cap=100, api_key=KEY) as tes:
        assert cli.main(["fetch", "--out", str(out), "--base-url", tes.base_url]) == 0
        before = folder_state(out)
        capsys.readouterr()
        tes.set_faults(always=Fault.slow(1.0))  # every answer now comes after the read timeout
        started = time.monotonic()
        code = cli.main(["fetch", "--out", str(out), "--base-url", tes.base_url])
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 5
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    assert "refinery/cli.py" not in err  # (the fake server's own thread may log a broken pipe)
    # one request and TES_RETRIES=2 retries, each cut at the 0.4 s read timeout: bounded
    assert 3 * 0.4 <= elapsed < 10
    assert folder_state(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tes"]


def _fetch_into(out: Path, valuesets: list[dict[str, Any]]) -> int:
    with FakeTES(valuesets, page_cap=100, api_key=KEY) as tes:
        return cli.main(["fetch", "--out", str(out), "--base-url", tes.base_url])


def _bytes_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A tmpfs sized 1.5x one fetch of SPEC, or a skip where mounting is not allowed."""
    probe = tmp_path / "probe"
    valuesets = synthetic.generate_valuesets(SPEC)
    files.write(probe, _render(valuesets))
    size = (_bytes_of(probe) * 3 // 2 // 4096 + 1) * 4096
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk, size
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _render(valuesets: list[dict[str, Any]]) -> list[files.RenderedFile]:
    from loaders.tes.fetch import sort_valuesets

    return files.render(sort_valuesets(valuesets, validate=False).groups)


def test_disk_full_under_the_staging_folder_leaves_the_folder_untouched(
    fetch_env: None, tiny_disk: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    disk, size = tiny_disk
    out = disk / "tes"
    valuesets = synthetic.generate_valuesets(SPEC)
    assert _fetch_into(out, valuesets) == 0
    before = folder_state(out)
    free_before = os.statvfs(disk).f_bavail
    capsys.readouterr()

    code = _fetch_into(out, _revised(valuesets))  # every file changes: the staging copy overflows

    err = capsys.readouterr().err
    lines = [line for line in error_lines(err) if line.startswith("error:")]
    assert code != 0 and len(lines) == 1 and "refinery/cli.py" not in err
    assert "No space left on device" in lines[0] and "unchanged" in lines[0]
    assert folder_state(out) == before
    assert sorted(p.name for p in disk.iterdir()) == ["tes"], "a staging folder was left behind"
    assert os.statvfs(disk).f_bavail == free_before
    assert _fetch_into(out, valuesets) == 0 and folder_state(out) == before  # still usable
    assert size > 0


def test_enospc_midway_through_the_staging_files_leaves_the_folder_untouched(
    fetch_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same fault without a small disk: the writer's third file fails with ENOSPC."""
    out = tmp_path / "tes"
    valuesets = synthetic.generate_valuesets(SPEC)
    assert _fetch_into(out, valuesets) == 0
    before = folder_state(out)
    real_write = files._write_bytes
    written: list[Path] = []

    def failing_write(path: Path, data: bytes) -> None:
        written.append(path)
        if len(written) == 3:
            with path.open("wb") as handle:
                handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(files, "_write_bytes", failing_write)
    capsys.readouterr()
    code = _fetch_into(out, _revised(valuesets))
    err = capsys.readouterr().err
    assert code != 0 and "No space left on device" in err and "refinery/cli.py" not in err
    assert len(written) == 3 and all(path.parent != out for path in written)
    assert folder_state(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tes"]


# --- the database killed mid-load --------------------------------------------------------------------


def _big_tes(folder: Path, files_count: int = 10, per_file: int = 120) -> list[Path]:
    codes = [f"{n:08d}" for n in range(400)]
    return [
        write_json(
            folder / f"big_{f:02d}.json",
            {"valuesets": [valueset(f"big-{f}-{n}", codes=codes) for n in range(per_file)]},
        )
        for f in range(files_count)
    ]


def _expected_keys(paths: list[Path]) -> set[tuple[str, str, str]]:
    keys = set()
    for path in paths:
        document = json.loads(path.read_text())
        for record in document["valuesets"] if isinstance(document, dict) else document:
            keys.add((record["url"], record["version"], content_sha256(record)))
    return keys


def _stored_keys(settings: DatabaseSettings) -> list[tuple[str, str, str]]:
    return [
        tuple(row)
        for row in query(  # type: ignore[misc]
            settings, "select canonical_url, version, resource_sha256 from raw.tes_valuesets"
        )
    ]


def _wait_for(
    settings: DatabaseSettings, pattern: str, process: subprocess.Popen[str], timeout: float = 60
) -> int | None:
    """The pid of an active backend whose query matches `pattern` (ILIKE), polling."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(settings.conninfo(), autocommit=True) as admin:
        while time.monotonic() < deadline and process.poll() is None:
            row = admin.execute(
                "select pid from pg_stat_activity where datname = current_database()"
                " and pid <> pg_backend_pid() and state = 'active' and query ilike %s limit 1",
                (pattern,),
            ).fetchone()
            if row:
                return int(row[0])
            time.sleep(0.01)
    return None


def test_loader_connection_terminated_mid_copy_then_the_next_run_recovers(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    base = [write_json(tmp_path / "base.json", [valueset("before")])]
    assert refinery(["load", "tes", str(base[0])], fresh_database).returncode == 0
    before = table_hashes(fresh_database)
    paths = _big_tes(tmp_path / "big")

    process = start_refinery(["load", "tes", *map(str, paths)], fresh_database)
    pid = _wait_for(fresh_database, "copy %", process)
    assert pid is not None, "the COPY finished before it could be killed"
    query(fresh_database, "select pg_terminate_backend(%s)", (pid,))
    _, stderr = process.communicate(timeout=60)

    assert process.returncode not in (0, None)
    # psycopg itself may log "error ignored terminating <psycopg.Copy>" lines before ours
    errors = [line for line in error_lines(stderr) if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert "nothing was written" in errors[0]
    assert table_hashes(fresh_database) == before
    assert [status for _, _, status, _ in loads(fresh_database)] == ["succeeded", "failed"]

    again = refinery(["load", "tes", *map(str, paths)], fresh_database)
    assert again.returncode == 0, again.stderr
    stored = _stored_keys(fresh_database)
    assert len(stored) == len(set(stored)) == 1 + len(_expected_keys(paths))
    assert set(stored) == _expected_keys(paths) | _expected_keys(base)


def test_configurations_load_terminated_mid_transaction_keeps_the_old_snapshot(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    _, configurations = synthetic_inputs(tmp_path / "synthetic")
    assert refinery(["load", "configurations", str(configurations)], fresh_database).returncode == 0
    before = table_hashes(fresh_database)
    changed = mutated_configurations(configurations, tmp_path / "changed.json")
    with psycopg.connect(fresh_database.conninfo()) as blocker:
        # hold the table so the load stops right after its raw.loads row, mid-transaction
        blocker.execute("lock table raw.configurations in share mode")
        process = start_refinery(["load", "configurations", str(changed)], fresh_database)
        pid = _wait_for(fresh_database, "%delete from raw.configurations%", process)
        assert pid is not None
        query(fresh_database, "select pg_terminate_backend(%s)", (pid,))
        _, stderr = process.communicate(timeout=60)
        blocker.rollback()
    assert process.returncode not in (0, None) and "Traceback" not in stderr
    assert table_hashes(fresh_database) == before
    again = refinery(["load", "configurations", str(changed)], fresh_database)
    assert again.returncode == 0, again.stderr
    ids = sorted(row[0] for row in query(fresh_database, "select id from raw.configurations"))
    assert ids == sorted(record["id"] for record in json.loads(changed.read_text()))


# --- a throwaway embedded server: killed mid-load, restarted between load and build -------------------


@pytest.fixture(scope="module")
def throwaway_server() -> Iterator[DatabaseSettings]:
    """An embedded PostgreSQL of our own (REFINERY_HOME in a temporary folder) we may kill."""
    names = ("REFINERY_HOME", "REFINERY_EMBEDDED_PORT")
    saved = {name: os.environ.get(name) for name in names}
    # outside pytest's numbered temp folders, which concurrent pytest sessions prune
    home = Path(tempfile.mkdtemp(prefix="refinery-reliability-embedded-"))
    os.environ["REFINERY_HOME"] = str(home)
    os.environ["REFINERY_EMBEDDED_PORT"] = str(free_port())
    try:
        state = embedded.up()
        assert state.port is not None
        settings = connection.embedded_settings(state.port)
        connection.ensure_database(settings)
        dbinit.init(settings)
        # the server runs with synchronous_commit=off: make the init durable before any test
        # kills the server (else a crash may take it back, and the next load finds no schema)
        execute(settings, "checkpoint")
        yield settings
    finally:
        embedded.down()
        shutil.rmtree(home, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _kill_server() -> None:
    """Stop the embedded server the hard way: no checkpoint, crash recovery at the next start."""
    subprocess.run(
        [str(embedded._bin() / "pg_ctl"), "-D", str(embedded.data_dir()), "-m", "immediate", "-w", "stop"],
        user=embedded.SYSTEM_USER if os.geteuid() == 0 else None,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert not embedded.status().running


def test_server_killed_mid_load_then_restarted_loses_and_doubles_nothing(
    throwaway_server: DatabaseSettings, tmp_path: Path
) -> None:
    settings = throwaway_server
    paths = _big_tes(tmp_path / "big", files_count=8)
    process = start_refinery(["load", "tes", *map(str, paths)], settings)
    assert _wait_for(settings, "copy %", process) is not None
    _kill_server()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode not in (0, None)
    errors = [line for line in error_lines(stderr) if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr

    embedded.up()
    if query(settings, "select to_regclass('raw.tes_valuesets')")[0][0] is not None:
        assert query(settings, "select count(*) from raw.tes_valuesets") == [(0,)]
    again = refinery(["load", "tes", *map(str, paths)], settings)
    assert again.returncode == 0, again.stderr
    stored = _stored_keys(settings)
    assert len(stored) == len(set(stored)) and set(stored) == _expected_keys(paths)
    execute(settings, "truncate raw.tes_valuesets, raw.loads, raw.rejected_records, raw.configurations")


def test_server_killed_between_load_and_build_then_the_next_run_converges(
    throwaway_server: DatabaseSettings, tmp_path: Path
) -> None:
    settings = throwaway_server
    tes_dir, configurations = synthetic_inputs(tmp_path / "synthetic")
    assert refinery(["load", "tes", str(tes_dir)], settings).returncode == 0
    assert refinery(["load", "configurations", str(configurations)], settings).returncode == 0
    _kill_server()

    failed = refinery(["build"], settings)
    assert failed.returncode == 2, failed.stderr  # nothing answers: a clear failure, not a hang
    assert "cannot reach PostgreSQL" in failed.stderr and "Traceback" not in failed.stderr

    # the next scheduled run: the server comes back (crash recovery), loads again, builds.
    # The embedded server runs with synchronous_commit=off: a crash may lose the last commits,
    # so the next run loads again (whatever survived is 'unchanged', the rest is inserted).
    embedded.up()
    for args in (["load", "tes", str(tes_dir)], ["load", "configurations", str(configurations)]):
        result = refinery(args, settings)
        assert result.returncode == 0, result.stderr
    build = refinery(["build", *CACHE], settings, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:]
    stored = _stored_keys(settings)
    expected = _expected_keys([path for path in tes_dir.glob("*.json") if path.name != "manifest.json"])
    assert len(stored) == len(set(stored)) and set(stored) == expected
    assert query(settings, "select count(*) from raw.configurations")[0][0] == len(
        json.loads(configurations.read_text())
    )
    rows = cache_rows(settings)
    assert rows and len({(r["snomed_code"], r["jurisdiction_id"]) for r in rows}) == len(rows)


# --- a dbt build killed mid-run ---------------------------------------------------------------------------


def test_build_killed_while_refinement_cache_runs_then_rerun_converges(
    module_database: DatabaseSettings, tmp_path: Path
) -> None:
    settings = module_database
    tes_dir, configurations = synthetic_inputs(tmp_path / "synthetic")
    for args in (["load", "tes", str(tes_dir)], ["load", "configurations", str(configurations)]):
        assert refinery(args, settings).returncode == 0
    first = refinery(["build", *CACHE], settings, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:]
    changed = mutated_configurations(configurations, tmp_path / "changed.json")
    assert refinery(["load", "configurations", str(changed)], settings).returncode == 0
    before_kill = cache_rows(settings)

    # the cache's statement takes milliseconds here: a lock held on the table keeps it in flight
    # (active, waiting) until the build has been killed; released, it runs to the end and finds
    # its client gone before the commit, which is a statement of its own
    with psycopg.connect(settings.conninfo()) as holder:
        holder.execute("lock table refiner.refinement_cache in access exclusive mode")
        process = start_refinery(["build", *CACHE], settings)
        pid = _wait_for(settings, '%"node_id": "model.refinery.refinement_cache"%', process, timeout=300)
        assert pid is not None, "refinement_cache never ran"
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
        holder.rollback()
    wait_idle(settings)
    assert cache_rows(settings) == before_kill, "a killed build changed the cache"

    rerun = refinery(["build", *CACHE], settings, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    converged = cache_rows(settings)
    full = refinery(["build", "--full-refresh", "--select", "refinement_cache"], settings, timeout=600)
    assert full.returncode == 0, full.stdout[-3000:]
    assert converged == cache_rows(settings)
    assert converged != before_kill
    leftovers = query(
        settings,
        "select relname from pg_class where relkind in ('r', 'v', 'm')"
        " and (relname like '%%dbt\\_tmp' or relname like '%%dbt\\_backup')",
    )
    assert leftovers == []
