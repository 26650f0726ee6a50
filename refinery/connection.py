"""One place that decides which PostgreSQL the loaders and dbt talk to.

Order: `DATABASE_URL`; else the libpq variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
`PGDATABASE`) when any is set; else the embedded default server (started on demand).
`PGSSLMODE` / `PGSSLROOTCERT` (or `?sslmode=` / `?sslrootcert=` in the URL) reach both psycopg
and dbt. The dbt commands (build, check, docs, export, and sync's build step) use
`REFINERY_BUILD_DATABASE_URL` when it is set, so a job can hold a loader and a builder credential.
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

__all__ = ["DatabaseSettings", "configured", "connect", "dbt_env", "resolve", "resolve_build"]

PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
TLS_VARIABLES = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT"}
BUILD_URL = "REFINERY_BUILD_DATABASE_URL"
BUILDER_ROLE = "refiner_builder"
DEFAULT_DATABASE = "refinery"


def _from_url(
    url: str, source: str = "DATABASE_URL", environ: Mapping[str, str] | None = None
) -> DatabaseSettings:
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"{source} is not a valid PostgreSQL URL: {exc}") from exc
    return _settings(_with_tls(params, environ), source)


def _with_tls(params: Mapping[str, object], environ: Mapping[str, str] | None) -> dict[str, object]:
    """`params` plus PGSSLMODE / PGSSLROOTCERT where they do not say otherwise."""
    env = os.environ if environ is None else environ
    merged = dict(params)
    for key, variable in TLS_VARIABLES.items():
        if not merged.get(key) and env.get(variable):
            merged[key] = env[variable]
    return merged


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
        sslmode=str(params["sslmode"]) if params.get("sslmode") else None,
        sslrootcert=str(params["sslrootcert"]) if params.get("sslrootcert") else None,
    )


def configured(environ: Mapping[str, str] | None = None) -> DatabaseSettings | None:
    """Settings from the environment, or None when the embedded default applies."""
    env = os.environ if environ is None else environ
    if env.get("DATABASE_URL"):
        return _from_url(env["DATABASE_URL"], environ=env)
    if any(env.get(name) for name in PG_VARIABLES):
        return _settings(
            _with_tls(
                {
                    "host": env.get("PGHOST"),
                    "port": env.get("PGPORT"),
                    "user": env.get("PGUSER"),
                    "password": env.get("PGPASSWORD"),
                    "dbname": env.get("PGDATABASE"),
                },
                env,
            ),
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
    ensure_initialised(settings)
    return settings


def ensure_initialised(settings: DatabaseSettings) -> None:
    """Run `refinery db init` on the embedded server's database when it needs it.

    The embedded server is refinery's own (its superuser is refinery's user), so it is set up on
    first use; a configured server is initialised explicitly by its administrator.
    """
    from loaders.land.ddl import SCHEMA_VERSION, schema_version
    from refinery import dbinit

    with connect(settings) as conn:
        found = schema_version(conn)
    if found is None or found < SCHEMA_VERSION:
        dbinit.init(settings, dbinit.configured_target_schema())


def resolve_build(*, start_embedded: bool = True) -> DatabaseSettings:
    """The database for dbt: `REFINERY_BUILD_DATABASE_URL` when set (a `refiner_builder` login
    beside the loader's credential), else the same as `resolve()`."""
    url = os.environ.get(BUILD_URL)
    if url:
        return _from_url(url, BUILD_URL)
    return resolve(start_embedded=start_embedded)


def build_role(settings: DatabaseSettings) -> str:
    """The role dbt switches to (`set role`, the profile's `role`): `REFINERY_BUILD_ROLE` when
    set (empty for none), else `refiner_builder` when the login may act as it.

    Building as the group role makes it the owner of every built relation, so any of its
    logins (and an administrator) can rebuild them, and its default privileges apply.
    """
    configured_role = os.environ.get("REFINERY_BUILD_ROLE")
    if configured_role is not None:
        return configured_role.strip()
    try:
        with connect(settings) as conn:
            row = conn.execute(
                "select pg_has_role(oid, 'MEMBER') from pg_catalog.pg_roles where rolname = %s",
                (BUILDER_ROLE,),
            ).fetchone()
    except ConfigurationError:
        return ""  # dbt reports the unreachable database itself, in its own words
    return BUILDER_ROLE if row and row[0] else ""


def ensure_database(settings: DatabaseSettings) -> None:
    """Create the target database when it is missing (embedded server and tests)."""
    admin = settings.with_database("postgres")
    with connect(admin, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (settings.dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(settings.dbname)))


def dbt_env(settings: DatabaseSettings) -> dict[str, str]:
    """The variables `profiles.yml.example` reads (the TLS ones only when set)."""
    env = {
        "PGHOST": settings.host,
        "PGPORT": str(settings.port),
        "PGUSER": settings.user,
        "PGDATABASE": settings.dbname,
        "PGPASSWORD": settings.password or "",
    }
    env.update({TLS_VARIABLES[name]: value for name, value in settings.tls().items()})
    return env


def dbt_environment(settings: DatabaseSettings, role: str = "") -> AbstractContextManager[None]:
    """Expose the settings (and the role to build as) to dbt's profile for one dbt invocation."""
    return scoped_environ({**dbt_env(settings), "REFINERY_BUILD_ROLE": role})
