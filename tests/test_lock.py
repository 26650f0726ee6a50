"""The load lock: one loader at a time per database, bounded waits, exit code 4."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from loaders.errors import LockBusyError
from loaders.land import lock
from loaders.land.tes import load_tes
from refinery import cli
from refinery.connection import DatabaseSettings
from tests._land_helpers import fetch_format, query, valueset, write_json
from tests.conftest import env_for


def _lock_holders(settings: DatabaseSettings) -> int:
    return query(
        settings,
        "select count(*) from pg_locks where locktype = 'advisory' and granted"
        " and objid = %s and database = (select oid from pg_database where datname = current_database())",
        (lock.LOAD_LOCK_KEY & 0xFFFFFFFF,),
    )[0][0]


def test_busy_lock_waits_the_timeout_then_fails_with_a_clear_message(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    file = write_json(tmp_path / "a.json", [valueset("a")])
    with lock.hold(fresh_database, 1) as held:
        assert _lock_holders(fresh_database) == 1
        started = time.monotonic()
        with pytest.raises(LockBusyError) as caught:
            load_tes([file], fresh_database, lock_timeout=0.6)
        waited = time.monotonic() - started
        message = str(caught.value)
        assert 0.6 <= waited < 5
        assert "another load is running" in message and f"pid {held.conn.info.backend_pid}" in message
        # the holder passes its lock on: no deadlock, no second wait
        result = load_tes([file], fresh_database, lock_timeout=0, held_lock=held)
        assert result.inserted == 1
    assert _lock_holders(fresh_database) == 0
    assert load_tes([file], fresh_database, lock_timeout=0).unchanged == 1


def test_lock_is_released_when_a_load_fails(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[", encoding="utf-8")
    with pytest.raises(Exception, match="truncated JSON"):
        load_tes([bad], fresh_database)
    assert _lock_holders(fresh_database) == 0
    with lock.hold(fresh_database, 0):
        pass


def test_two_concurrent_loads_the_second_exits_4(
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    use_database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    big = [
        write_json(
            tmp_path / "big" / f"part_{f}.json",
            fetch_format("rs", [valueset(f"b{f}-{n}") for n in range(120)]),
        )
        for f in range(10)
    ]
    small = write_json(tmp_path / "small.json", [valueset("small")])
    use_database(fresh_database)
    command = [sys.executable, "-m", "refinery.cli", "load", "tes", str(tmp_path / "big")]
    with psycopg.connect(fresh_database.conninfo()) as blocker:
        # Keep the first load busy for as long as the test needs, whatever the machine's speed:
        # its COPY into raw.tes_valuesets waits for this lock, with the load lock held.
        blocker.execute("lock table raw.tes_valuesets in share mode")
        first = subprocess.Popen(
            command, env=env_for(fresh_database), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while _lock_holders(fresh_database) == 0 and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert first.poll() is None, first.communicate()
            started = time.monotonic()
            second = cli.main(["load", "tes", "--lock-timeout", "0.5", str(small)])
            waited = time.monotonic() - started
            assert first.poll() is None
        finally:
            blocker.rollback()  # let the first load go on
            out, err = first.communicate(timeout=300)
    printed = capsys.readouterr()
    assert second == 4
    assert "another load is running" in printed.err and "Traceback" not in printed.err
    assert waited >= 0.5
    assert first.returncode == 0, err
    assert f"{len(big) * 120} inserted" in out
    # the refused load wrote nothing but its 'failed' row
    loads = query(fresh_database, "select status from raw.loads order by load_id")
    assert sorted(status for (status,) in loads) == ["failed", "succeeded"]
    assert query(
        fresh_database, "select count(*) from raw.tes_valuesets where resource ->> 'id' = 'small'"
    ) == [(0,)]
    assert cli.main(["load", "tes", str(small)]) == 0
    assert query(
        fresh_database, "select count(*) from raw.tes_valuesets where resource ->> 'id' = 'small'"
    ) == [(1,)]


def test_configurations_and_tes_share_the_lock(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    from loaders.land.configurations import load_configurations

    file = tmp_path / "c.json"
    file.write_text("[]", encoding="utf-8")
    with psycopg.connect(fresh_database.conninfo(), autocommit=True) as other:
        lock.acquire(other, 0)
        with pytest.raises(LockBusyError):
            load_configurations(file, fresh_database, lock_timeout=0.2)
        lock.release(other)
    assert load_configurations(file, fresh_database, lock_timeout=0.2).records == 0
