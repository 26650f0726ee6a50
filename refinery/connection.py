"""One place that decides which PostgreSQL the loaders and dbt talk to.

Order: `DATABASE_URL`; else the libpq variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
`PGDATABASE`) when any is set; else the embedded default server (started on demand).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from loaders.db import DatabaseSettings, connect
from loaders.errors import ConfigurationError
from refinery import embedded
from refinery.environ import scoped_environ

__all__ = ["DatabaseSettings", "configured", "connect", "dbt_env", "resolve"]

PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
DEFAULT_DATABASE = "refinery"


def _from_url(url: str) -> DatabaseSettings:
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"DATABASE_URL is not a valid PostgreSQL URL: {exc}") from exc
    return _settings(params, "DATABASE_URL")


def _settings(params: Mapping[str, object], source: str) -> DatabaseSettings:
    raw_port = str(params.get("port") or "5432")
    try:
        port = int(raw_port)
    except ValueError as exc:
        raise ConfigurationError(f"{source}: port must be a number, got {raw_port!r}") from exc
    return DatabaseSettings(
        host=str(params.get("host") or "localhost"),
        port=port,
        user=str(params.get("user") or "postgres"),
        password=str(params["password"]) if params.get("password") else None,
        dbname=str(params.get("dbname") or DEFAULT_DATABASE),
        source=source,
    )


def configured(environ: Mapping[str, str] | None = None) -> DatabaseSettings | None:
    """Settings from the environment, or None when the embedded default applies."""
    env = os.environ if environ is None else environ
    if env.get("DATABASE_URL"):
        return _from_url(env["DATABASE_URL"])
    if any(env.get(name) for name in PG_VARIABLES):
        return _settings(
            {
                "host": env.get("PGHOST"),
                "port": env.get("PGPORT"),
                "user": env.get("PGUSER"),
                "password": env.get("PGPASSWORD"),
                "dbname": env.get("PGDATABASE"),
            },
            "PG variables",
        )
    return None


def embedded_settings(port: int) -> DatabaseSettings:
    return DatabaseSettings(
        host="127.0.0.1",
        port=port,
        user=embedded.SUPERUSER,
        password=None,
        dbname=embedded.DATABASE,
        source="embedded",
    )


def resolve(*, start_embedded: bool = True) -> DatabaseSettings:
    """The database to use; starts the embedded server when nothing else is configured."""
    settings = configured()
    if settings is not None:
        return settings
    current = embedded.up() if start_embedded else embedded.status()
    if not current.running or current.port is None:
        raise ConfigurationError("the embedded PostgreSQL is not running; run `refinery db up`")
    settings = embedded_settings(current.port)
    ensure_database(settings)
    return settings


def ensure_database(settings: DatabaseSettings) -> None:
    """Create the target database when it is missing (embedded server and tests)."""
    admin = settings.with_database("postgres")
    with connect(admin, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (settings.dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(settings.dbname)))


def dbt_env(settings: DatabaseSettings) -> dict[str, str]:
    """The variables `profiles.yml.example` reads."""
    return {
        "PGHOST": settings.host,
        "PGPORT": str(settings.port),
        "PGUSER": settings.user,
        "PGDATABASE": settings.dbname,
        "PGPASSWORD": settings.password or "",
    }


def dbt_environment(settings: DatabaseSettings) -> AbstractContextManager[None]:
    """Expose the settings to dbt's profile for the duration of one dbt invocation."""
    return scoped_environ(dbt_env(settings))
