"""The embedded default always gets exercised, whatever server CI has (issue 2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .conftest import free_port
from .test_foundation import bare_env, run_cli

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
    assert stopped.returncode == 3 and "not running" in stopped.stdout

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
    assert run_cli(["db", "status"], embedded_env).returncode == 3

    # started on demand by the next command, data kept
    assert run_cli(["db", "url"], embedded_env).returncode == 0
    with psycopg.connect(url.stdout.strip()) as conn:
        assert conn.execute("select count(*) from survives_restart").fetchone()[0] == 1
