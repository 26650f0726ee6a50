"""Shared fixtures: one real PostgreSQL per test session, one fresh database per session.

The server: whatever answers at DATABASE_URL / the PG variables, else 127.0.0.1:5432 as
`postgres` (CI), else the embedded server in a temporary folder. dbt artifacts go to a temporary
target path so parallel runs do not share `target/`.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from refinery import connection
from refinery.connection import DatabaseSettings
from refinery.environ import scoped_environ

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLE = REPO.parent / "shared" / "tes-sample"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(settings: DatabaseSettings) -> bool:
    try:
        with psycopg.connect(settings.with_database("postgres").conninfo(connect_timeout=3)):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseSettings]:
    """Admin settings of a running PostgreSQL server (database `postgres`)."""
    candidate = connection.configured() or DatabaseSettings(
        host="127.0.0.1",
        port=5432,
        user="postgres",
        password=None,
        dbname="postgres",
        source="PG variables",
    )
    if _answers(candidate):
        yield candidate.with_database("postgres")
        return
    from refinery import embedded

    home = tmp_path_factory.mktemp("embedded-home")
    with scoped_environ({"REFINERY_HOME": str(home), "REFINERY_EMBEDDED_PORT": str(free_port())}):
        try:
            state = embedded.up()
            assert state.port is not None
            yield connection.embedded_settings(state.port).with_database("postgres")
        finally:
            embedded.down()


def create_database(
    admin: DatabaseSettings, prefix: str = "refinery_test", *, initialise: bool = True
) -> DatabaseSettings:
    """A new, uniquely named database; initialised by `refinery db init` unless `initialise=False`."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    settings = admin.with_database(name)
    if initialise:
        from refinery import dbinit

        dbinit.init(settings)
    return settings


def drop_database(admin: DatabaseSettings, settings: DatabaseSettings) -> None:
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.dbname))
        )


@pytest.fixture(scope="session")
def database(server: DatabaseSettings) -> Iterator[DatabaseSettings]:
    """A uniquely named database for this test session, dropped afterwards."""
    settings = create_database(server)
    try:
        yield settings
    finally:
        drop_database(server, settings)


@pytest.fixture
def fresh_database(server: DatabaseSettings) -> Iterator[DatabaseSettings]:
    """A uniquely named database for one test."""
    settings = create_database(server, "refinery_t")
    try:
        yield settings
    finally:
        drop_database(server, settings)


@pytest.fixture(scope="session", autouse=True)
def _isolated_dbt_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep this session's dbt artifacts and logs out of the shared `target/`."""
    base = tmp_path_factory.mktemp("dbt")
    with scoped_environ(
        {
            "DBT_TARGET_PATH": str(base / "target"),
            "DBT_LOG_PATH": str(base / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
    ):
        yield


def env_for(settings: DatabaseSettings) -> dict[str, str]:
    """Environment that points `refinery` (in a subprocess or in-process) at `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in connection.PG_VARIABLES}
    env["DATABASE_URL"] = settings.url(show_password=True)
    return env


@pytest.fixture
def use_database(monkeypatch: pytest.MonkeyPatch):
    """Point in-process `refinery` calls at a database: `use_database(settings)`."""

    def apply(settings: DatabaseSettings) -> None:
        for name in connection.PG_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("DATABASE_URL", settings.url(show_password=True))

    return apply


def can_execute(settings: DatabaseSettings, statement: str) -> bool:
    """Run one statement as `settings`' user, rolled back; False when PostgreSQL denies the privilege."""
    with psycopg.connect(settings.conninfo()) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return False
        finally:
            conn.rollback()
    return True
