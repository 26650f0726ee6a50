"""The embedded default always gets exercised, whatever server CI has (issue 2)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .conftest import REPO, free_port
from .test_foundation import CLI, bare_env, run_cli

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def embedded_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("refinery-home")
    env = bare_env(REFINERY_HOME=str(home), REFINERY_EMBEDDED_PORT=str(free_port()))
    try:
        yield env
    finally:
        run_cli(["db", "down"], env)


def test_embedded_server_lifecycle(embedded_env: dict[str, str]) -> None:
    home = Path(embedded_env["REFINERY_HOME"])
    port = embedded_env["REFINERY_EMBEDDED_PORT"]

    stopped = run_cli(["db", "status"], embedded_env)
    assert stopped.returncode == 2 and "not running" in stopped.stdout

    started = run_cli(["db", "up"], embedded_env)
    assert started.returncode == 0, started.stderr
    assert f"127.0.0.1:{port}/refinery" in started.stdout
    assert (home / "pgdata" / "PG_VERSION").exists()

    url = run_cli(["db", "url"], embedded_env)
    assert url.returncode == 0
    assert url.stdout.strip() == f"postgresql://postgres@127.0.0.1:{port}/refinery"

    # a second `up` reuses the running server instead of starting another
    again = run_cli(["db", "up"], embedded_env)
    assert again.returncode == 0
    with psycopg.connect(url.stdout.strip()) as conn:
        version = conn.execute("show server_version_num").fetchone()[0]
        assert int(version) >= 150000
        conn.execute("create table if not exists survives_restart (x int)")
        conn.execute("insert into survives_restart values (1)")

    env_lines = run_cli(["db", "env"], embedded_env).stdout
    assert f"export PGPORT={port}" in env_lines and "export PGDATABASE=refinery" in env_lines

    assert run_cli(["db", "down"], embedded_env).returncode == 0
    assert run_cli(["db", "status"], embedded_env).returncode == 2

    # started on demand by the next command, data kept
    assert run_cli(["db", "url"], embedded_env).returncode == 0
    with psycopg.connect(url.stdout.strip()) as conn:
        assert conn.execute("select count(*) from survives_restart").fetchone()[0] == 1


def test_demo_runs_on_the_embedded_default(embedded_env: dict[str, str], tmp_path: Path) -> None:
    """The README's first command, minus the install: `refinery demo` with no server configured."""
    env = {
        **embedded_env,
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
    }
    result = subprocess.run(
        [*CLI, "demo", "--out", str(tmp_path / "demo")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "(embedded)" in out
    assert "Serving tables" in out and "Sanity checks" in out and "demo done" in out
    rows = dict(re.findall(r"│ (\w+)\s+│\s+([\d,]+) │", out))
    for table in ("tes_condition_groupers", "tes_reporting_spec_groupers", "refinement_cache"):
        assert int(rows[table].replace(",", "")) > 0, table
    assert not re.search(r"│ (FAIL|ERROR) ", out)
    with psycopg.connect(run_cli(["db", "url"], embedded_env).stdout.strip()) as conn:
        cache_rows = conn.execute("select count(*) from refiner.refinement_cache").fetchone()[0]
    assert cache_rows == int(rows["refinement_cache"].replace(",", ""))
