"""One place that decides which PostgreSQL the loaders and dbt talk to.

Order: `DATABASE_URL`; else the libpq variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
`PGDATABASE`) when any is set; else the embedded default server (started on demand).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from urllib.parse import quote

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from loaders import embedded
from loaders.environ import scoped_environ
from loaders.errors import ConfigurationError

PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
DEFAULT_DATABASE = "refinery"


@dataclass(frozen=True)
class DatabaseSettings:
    """Resolved connection settings, shared by psycopg and dbt."""

    host: str
    port: int
    user: str
    password: str | None
    dbname: str
    source: str  # "DATABASE_URL", "PG variables" or "embedded"

    def conninfo(self, **overrides: object) -> str:
        params: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "connect_timeout": 10,
            "application_name": "refinery",
        }
        if self.password:
            params["password"] = self.password
        params.update(overrides)
        return pg_conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})

    def url(self, *, show_password: bool = False) -> str:
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + (quote(self.password, safe="") if show_password else "***")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.dbname, safe='')}"

    def describe(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname} as {self.user} ({self.source})"

    def with_database(self, dbname: str) -> DatabaseSettings:
        return replace(self, dbname=dbname)

    def dbt_env(self) -> dict[str, str]:
        """The variables `profiles.yml.example` reads."""
        env = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGPASSWORD": self.password or "",
        }
        return env


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


def _explain(exc: psycopg.OperationalError, settings: DatabaseSettings) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = lines[-1] if lines else "unknown error"
    for line in lines:
        if "FATAL" in line or "refused" in line or "timeout" in line or "resolve" in line:
            detail = line
            break
    detail = detail.replace("connection failed: ", "")
    where = f"{settings.host}:{settings.port}"
    lower = text.lower()
    if "password authentication failed" in lower or "no password supplied" in lower:
        return (
            f"PostgreSQL at {where} rejected user {settings.user!r}: "
            f"wrong or missing password ({settings.source})"
        )
    if "does not exist" in lower and "database" in lower:
        return (
            f"database {settings.dbname!r} does not exist on {where}; create it "
            f"(createdb {settings.dbname}) or set PGDATABASE ({settings.source})"
        )
    if "refused" in lower or "could not connect" in lower or "timeout" in lower:
        return f"cannot reach PostgreSQL at {where} ({settings.source}): {detail}"
    return f"cannot connect to PostgreSQL at {where} ({settings.source}): {detail}"


def connect(settings: DatabaseSettings, **kwargs: object) -> psycopg.Connection:
    """A psycopg connection, or a ConfigurationError with one clear line."""
    try:
        return psycopg.connect(settings.conninfo(), **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise ConfigurationError(_explain(exc, settings)) from exc


def ensure_database(settings: DatabaseSettings) -> None:
    """Create the target database when it is missing (embedded server and tests)."""
    admin = settings.with_database("postgres")
    with connect(admin, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (settings.dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(settings.dbname)))


def dbt_environment(settings: DatabaseSettings) -> AbstractContextManager[None]:
    """Expose the settings to dbt's profile for the duration of one dbt invocation."""
    return scoped_environ(settings.dbt_env())
