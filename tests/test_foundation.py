"""Issue 2: layout, connection resolution, clear one-line errors, container files."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from loaders.errors import ConfigurationError
from refinery import connection
from refinery.connection import DatabaseSettings

from .conftest import REPO, free_port

CLI = [sys.executable, "-m", "refinery.cli"]


def run_cli(args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def bare_env(**extra: str) -> dict[str, str]:
    """The current environment without any database settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (*connection.PG_VARIABLES, "DATABASE_URL", "REFINERY_HOME", "REFINERY_EMBEDDED_PORT")
    }
    env.update(extra)
    return env


def assert_one_clear_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- layout and container files ------------------------------------------------------------------


def test_layout_is_the_fixed_one() -> None:
    folders = ("models", "macros", "seeds", "snapshots", "loaders", "refinery", "tests", "tests/dbt", ".ci")
    for name in folders:
        assert (REPO / name).is_dir(), name
    for name in (
        "dbt_project.yml",
        "profiles.yml.example",
        "docker-compose.yml",
        "pyproject.toml",
        "README.md",
        ".ci/run",
        "Dockerfile",
        ".github/workflows/ci.yml",
    ):
        assert (REPO / name).is_file(), name
    project = yaml.safe_load((REPO / "dbt_project.yml").read_text())
    assert project["test-paths"] == ["tests/dbt"]
    assert project["profile"] == "refinery"


def test_pins_keep_dbt_below_1_12() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert '"dbt-core>=1.11,<1.12"' in text
    assert '"dbt-postgres~=1.11"' in text
    from importlib.metadata import version

    major, minor = (int(part) for part in version("dbt-core").split(".")[:2])
    assert (major, minor) == (1, 11)


def test_profile_example_has_three_targets_reading_the_environment() -> None:
    profile = yaml.safe_load((REPO / "profiles.yml.example").read_text())["refinery"]
    assert set(profile["outputs"]) == {"dev", "ci", "prod"}
    for output in profile["outputs"].values():
        assert output["type"] == "postgres"
        for key in ("host", "user", "dbname", "password"):
            assert "env_var(" in str(output[key]), key


def test_profile_threads_follow_refinery_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every target reads its threads from REFINERY_THREADS, which `refinery` sets to one per
    usable CPU unless it is set; a bad value is a clear error, not dbt's traceback."""
    from refinery import dbt

    profile = yaml.safe_load((REPO / "profiles.yml.example").read_text())["refinery"]
    for name, output in profile["outputs"].items():
        assert "env_var('REFINERY_THREADS'" in str(output["threads"]), name
    monkeypatch.delenv("REFINERY_THREADS", raising=False)
    assert dbt.threads() == str(len(os.sched_getaffinity(0)))
    monkeypatch.setenv("REFINERY_THREADS", " 3 ")
    assert dbt.threads() == "3"
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("REFINERY_THREADS", bad)
        with pytest.raises(ConfigurationError, match="REFINERY_THREADS must be a whole number"):
            dbt.threads()


def test_refinery_hands_its_threads_to_dbt(monkeypatch: pytest.MonkeyPatch) -> None:
    """The value is in the environment while dbt runs (the profile reads it), and only then."""
    import dbt.cli.main

    from refinery import dbt as refinery_dbt

    seen: list[str | None] = []

    class FakeResult:
        success, exception = True, None

    def fake_invoke(self: object, args: list[str]) -> FakeResult:
        seen.append(os.environ.get("REFINERY_THREADS"))
        return FakeResult()

    monkeypatch.setattr(dbt.cli.main.dbtRunner, "invoke", fake_invoke)
    monkeypatch.delenv("REFINERY_THREADS", raising=False)
    settings = DatabaseSettings("127.0.0.1", 5432, "postgres", None, "refinery", "test")
    assert refinery_dbt.run(["parse"], settings).exit_code == 0
    monkeypatch.setenv("REFINERY_THREADS", "5")
    refinery_dbt.run(["parse"], settings)
    assert seen == [str(len(os.sched_getaffinity(0))), "5"]
    monkeypatch.delenv("REFINERY_THREADS")
    refinery_dbt.run(["parse"], settings)
    assert "REFINERY_THREADS" not in os.environ


def test_docker_compose_is_well_formed() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    postgres, init, refinery = services["postgres"], services["init"], services["refinery"]
    assert str(postgres["image"]).startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    # the one-time `refinery db init` runs first, once the server is healthy; the job after it
    assert init["build"]["dockerfile"] == "Dockerfile"
    assert init["command"] == ["db", "init"]
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert refinery["image"] == init["image"]
    assert refinery["depends_on"]["init"]["condition"] == "service_completed_successfully"
    for service in (init, refinery):
        assert service["environment"]["PGHOST"] == "postgres"
        assert service["environment"]["PGUSER"] == postgres["environment"]["POSTGRES_USER"]
        assert service["environment"]["PGDATABASE"] == postgres["environment"]["POSTGRES_DB"]
    for volume in postgres.get("volumes", []):
        name = volume.split(":")[0]
        if not name.startswith((".", "/")):
            assert name in compose["volumes"], name
    # every path the Dockerfile copies exists in the repository
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci/run").read_text()
    command = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && bash .ci/test'
    assert command in readme
    assert command in ci
    assert "pip install -e . && refinery demo" in readme
    assert 'rc" -eq 5' in (REPO / ".ci/test").read_text()


# --- connection resolution -----------------------------------------------------------------------


def test_database_url_wins_over_pg_variables() -> None:
    settings = connection.configured(
        {"DATABASE_URL": "postgresql://u:p%40ss@db.example:6543/cache", "PGHOST": "ignored"}
    )
    assert settings == DatabaseSettings("db.example", 6543, "u", "p@ss", "cache", "DATABASE_URL")
    assert "p@ss" not in settings.url() and "***" in settings.url()


def test_pg_variables_with_defaults() -> None:
    settings = connection.configured({"PGHOST": "h", "PGUSER": "me"})
    assert settings == DatabaseSettings("h", 5432, "me", None, "refinery", "PG variables")
    assert connection.dbt_env(settings)["PGPORT"] == "5432"


def test_nothing_configured_means_embedded() -> None:
    assert connection.configured({"HOME": "/root"}) is None


def test_bad_port_is_a_clear_error() -> None:
    with pytest.raises(connection.ConfigurationError, match="port must be a number"):
        connection.configured({"PGHOST": "h", "PGPORT": "fifty"})


# --- clear one-line errors -----------------------------------------------------------------------


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = run_cli(["db", "status"], bare_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/x"))
    assert_one_clear_line(result, 2, "cannot reach PostgreSQL", f"127.0.0.1:{port}")


class FakePasswordServer:
    """Speaks just enough of the PostgreSQL protocol to reject a password."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakePasswordServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    @staticmethod
    def _read_exact(conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._handle(conn)
                except (ConnectionError, OSError):
                    continue

    def _handle(self, conn: socket.socket) -> None:
        while True:
            length = struct.unpack("!I", self._read_exact(conn, 4))[0]
            body = self._read_exact(conn, length - 4)
            code = struct.unpack("!I", body[:4])[0]
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                conn.sendall(b"N")
                continue
            break
        conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        kind = self._read_exact(conn, 1)
        size = struct.unpack("!I", self._read_exact(conn, 4))[0]
        self._read_exact(conn, size - 4)
        assert kind == b"p"
        fields = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "postgres"\0\0'
        conn.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)


def test_wrong_password_is_one_line() -> None:
    with FakePasswordServer() as fake:
        url = f"postgresql://postgres:s3cr3t-Pa55@127.0.0.1:{fake.port}/refinery?sslmode=disable"
        result = run_cli(["db", "status"], bare_env(DATABASE_URL=url))
    assert_one_clear_line(result, 2, "rejected user 'postgres'", "password")
    assert "s3cr3t-Pa55" not in result.stderr + result.stdout


def test_missing_profile_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "profiles"
    empty.mkdir()
    result = run_cli(
        ["build"], bare_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/x", DBT_PROFILES_DIR=str(empty))
    )
    # the profile is checked before anything else touches the database
    assert_one_clear_line(result, 2, "has no profiles.yml")


@pytest.fixture
def busy_port() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


def test_port_in_use_by_something_else_is_one_line(tmp_path: Path, busy_port: int) -> None:
    env = bare_env(REFINERY_HOME=str(tmp_path / "home"), REFINERY_EMBEDDED_PORT=str(busy_port))
    result = run_cli(["db", "up"], env)
    assert_one_clear_line(result, 2, f"port {busy_port}", "in use by another program")
    assert not (tmp_path / "home" / "pgdata" / "PG_VERSION").exists()


def test_bad_usage_exits_2_without_traceback() -> None:
    result = run_cli(["load", "nothing"], bare_env())
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_loaders_hold_only_loaders_and_the_application_lives_in_refinery() -> None:
    """`loaders/` fetches, classifies and lands; the CLI, settings, server and dbt runner are `refinery`'s."""
    import ast

    import refinery
    from refinery import cli

    assert refinery.__version__ and callable(cli.main)
    modules = sorted(str(path.relative_to(REPO)) for path in (REPO / "loaders").rglob("*.py"))
    assert modules == [
        "loaders/__init__.py",
        "loaders/db.py",
        "loaders/errors.py",
        "loaders/land/__init__.py",
        "loaders/land/configurations.py",
        "loaders/land/ddl.py",
        "loaders/land/loads.py",
        "loaders/land/lock.py",
        "loaders/land/reader.py",
        "loaders/land/tes.py",
        "loaders/tes/__init__.py",
        "loaders/tes/classify.py",
        "loaders/tes/client.py",
        "loaders/tes/fetch.py",
        "loaders/tes/files.py",
    ]
    for module in modules:
        tree = ast.parse((REPO / module).read_text())
        imported = {
            name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for name in (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            )
        }
        assert not imported & {"refinery", "dbt", "argparse"}, (module, imported)
    commands = {path.stem for path in (REPO / "refinery" / "commands").glob("*.py")} - {"__init__"}
    parser_commands = set(cli.build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert parser_commands <= commands, parser_commands - commands
