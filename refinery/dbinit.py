"""`refinery db init`: the one-time (and upgrade-time) setup of a database, run by its owner or an
administrator. Idempotent and safe to run concurrently.

It creates, in one transaction:

- the group roles `refiner_loader`, `refiner_builder`, `refiner_app`, `refiner_analyst` (NOLOGIN;
  people and services get their own LOGIN role, `grant <group> to <login>`);
- schema `raw` and its tables and indexes (`loaders/land/schema.sql`, migration 1), with the
  schema version in `raw.schema_version`; a database at a newer version than this project knows
  is refused;
- the schemas dbt builds into (`refiner`, `refiner_staging`, `refiner_intermediate`,
  `refiner_snapshots`, after `REFINERY_SCHEMA`), owned by `refiner_builder`;
- the grants: the loader reads and writes the rows of the raw tables and nothing else, the
  builder reads raw and owns its schemas, the app and the analyst may enter the schemas whose
  tables dbt grants them (`grants` in dbt_project.yml), the analyst reads every snapshot
  (default privileges of `refiner_builder`).

None of the roles gets SUPERUSER, CREATEROLE, CREATEDB or BYPASSRLS, nor CREATE on the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from loaders.db import DatabaseSettings, connect
from loaders.errors import ConfigurationError
from loaders.land.ddl import (
    RAW_SCHEMA_LOCK,
    RAW_TABLES,
    SCHEMA_VERSION,
    VERSION_TABLE,
    raw_schema_sql,
    schema_version,
    version_error,
)

LOADER, BUILDER, APP, ANALYST = "refiner_loader", "refiner_builder", "refiner_app", "refiner_analyst"
GROUP_ROLES = (LOADER, BUILDER, APP, ANALYST)

# version -> the SQL that takes the database from the version before to it. Each is applied once,
# in order, in the same transaction as the version row; append, never edit.
MIGRATIONS: dict[int, Callable[[], str]] = {
    1: raw_schema_sql,
}

VERSION_TABLE_SQL = f"""
create table if not exists {VERSION_TABLE} (
    version integer primary key,
    applied_at timestamptz not null default clock_timestamp(),
    refinery_version text not null
)
"""


@dataclass(frozen=True)
class InitResult:
    previous: int | None  # the schema version before, None on a database never initialised
    version: int
    applied: tuple[int, ...]
    created_roles: tuple[str, ...]
    schemas: tuple[str, ...]

    def describe(self) -> str:
        if self.applied:
            before = "an uninitialised database" if self.previous is None else f"version {self.previous}"
            change = f"schema version {self.version} (from {before})"
        else:
            change = f"schema version {self.version}, unchanged"
        roles = f"created roles {', '.join(self.created_roles)}" if self.created_roles else "roles in place"
        return f"database initialised: {change}; {roles}; schemas {', '.join(self.schemas)}"


def configured_target_schema() -> str:
    """The schema of the serving tables (`REFINERY_SCHEMA`, as the dbt profile reads it)."""
    return os.environ.get("REFINERY_SCHEMA", "refiner")


def built_schemas(target_schema: str) -> tuple[str, ...]:
    """The schemas dbt builds into (macros/generate_schema_name.sql)."""
    return (
        target_schema,
        f"{target_schema}_staging",
        f"{target_schema}_intermediate",
        f"{target_schema}_snapshots",
    )


def init(settings: DatabaseSettings, target_schema: str | None = None) -> InitResult:
    """Bring the database to this project's schema version, roles and grants."""
    schemas = built_schemas(target_schema or configured_target_schema())
    with connect(settings) as conn:
        try:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (RAW_SCHEMA_LOCK,))
                previous = schema_version(conn)
                if previous is not None and previous > SCHEMA_VERSION:
                    raise ConfigurationError(str(version_error(previous)))
                created = _create_roles(conn)
                applied = _migrate(conn, previous)
                _builder_schemas(conn, schemas)
                _grant(conn, schemas)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ConfigurationError(
                f"refinery db init needs the database owner or an administrator "
                f"(a role that may create roles and schemas), not {settings.user!r}: {_first_line(exc)}"
            ) from exc
    return InitResult(previous, SCHEMA_VERSION, applied, created, schemas)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _create_roles(conn: psycopg.Connection) -> tuple[str, ...]:
    """Create the group roles that are missing; the names of those created."""
    existing = {
        name
        for (name,) in conn.execute(
            "select rolname from pg_catalog.pg_roles where rolname = any(%s)", (list(GROUP_ROLES),)
        )
    }
    for role in GROUP_ROLES:
        if role in existing:
            continue
        # roles belong to the server: an init of another database may create one concurrently
        conn.execute(
            sql.SQL(
                """
                do $create_role$
                begin
                    if not exists (select from pg_catalog.pg_roles where rolname = {name}) then
                        create role {role} nologin nosuperuser nocreatedb nocreaterole nobypassrls;
                    end if;
                exception
                    when duplicate_object or unique_violation then
                        null;
                end
                $create_role$
                """
            ).format(name=sql.Literal(role), role=sql.Identifier(role))
        )
    return tuple(role for role in GROUP_ROLES if role not in existing)


def _migrate(conn: psycopg.Connection, previous: int | None) -> tuple[int, ...]:
    from refinery import __version__

    conn.execute("create schema if not exists raw")
    conn.execute(VERSION_TABLE_SQL)
    applied = []
    for version in sorted(MIGRATIONS):
        if previous is not None and version <= previous:
            continue
        conn.execute(MIGRATIONS[version]())
        conn.execute(
            f"insert into {VERSION_TABLE} (version, refinery_version) values (%s, %s)"
            " on conflict (version) do nothing",
            (version, __version__),
        )
        applied.append(version)
    return tuple(applied)


def _builder_schemas(conn: psycopg.Connection, schemas: tuple[str, ...]) -> None:
    """Create the build schemas owned by `refiner_builder`; hand it what earlier builds left."""
    is_member = conn.execute("select pg_has_role(%s, 'MEMBER')", (BUILDER,)).fetchone()[0]
    if not is_member:  # a non-superuser administrator may only give away what it could act as
        conn.execute(sql.SQL("grant {} to current_user").format(sql.Identifier(BUILDER)))
    for schema in schemas:
        conn.execute(
            sql.SQL("create schema if not exists {} authorization {}").format(
                sql.Identifier(schema), sql.Identifier(BUILDER)
            )
        )
        conn.execute(
            sql.SQL("alter schema {} owner to {}").format(sql.Identifier(schema), sql.Identifier(BUILDER))
        )
    owned_elsewhere = conn.execute(
        """
        select n.nspname, c.relname, c.relkind
        from pg_catalog.pg_class as c
        inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
        where n.nspname = any(%s)
            and c.relkind in ('r', 'p', 'v', 'm', 'f')
            and c.relowner <> %s::regrole
        order by n.nspname, c.relname
        """,
        (list(schemas), BUILDER),
    ).fetchall()
    kinds = {"v": "view", "m": "materialized view", "f": "foreign table"}
    for schema, name, kind in owned_elsewhere:
        conn.execute(
            sql.SQL("alter {} {} owner to {}").format(
                sql.SQL(kinds.get(kind, "table")), sql.Identifier(schema, name), sql.Identifier(BUILDER)
            )
        )


def _grant(conn: psycopg.Connection, schemas: tuple[str, ...]) -> None:
    target, _staging, _intermediate, snapshots = (sql.Identifier(name) for name in schemas)
    loader, builder, app, analyst = (sql.Identifier(role) for role in GROUP_ROLES)
    raw_tables = sql.SQL(", ").join(sql.SQL(name) for name in RAW_TABLES)
    version = sql.SQL(VERSION_TABLE)
    statements = [
        # raw: the loader writes rows, the builder reads; nobody but the owner changes the tables
        sql.SQL("revoke all on schema raw from public"),
        sql.SQL("grant usage on schema raw to {}, {}").format(loader, builder),
        sql.SQL("revoke create on schema raw from {}, {}").format(loader, builder),
        sql.SQL("grant select, insert, update, delete on {} to {}").format(raw_tables, loader),
        sql.SQL("revoke truncate, references, trigger on {} from {}").format(raw_tables, loader),
        sql.SQL("grant usage, select on all sequences in schema raw to {}").format(loader),
        sql.SQL("grant select on all tables in schema raw to {}").format(builder),
        sql.SQL("grant select on {} to {}").format(version, loader),
        sql.SQL("revoke insert, update, delete, truncate on {} from {}").format(version, loader),
        # earlier versions granted the loader every table created later in raw: no more
        sql.SQL("alter default privileges in schema raw revoke all on tables from {}").format(loader),
        sql.SQL("alter default privileges in schema raw revoke all on sequences from {}").format(loader),
        # the built schemas: the app and the analyst may enter those holding what dbt grants them
        sql.SQL("grant usage on schema {} to {}, {}").format(target, app, analyst),
        sql.SQL("grant usage on schema {} to {}").format(snapshots, analyst),
        sql.SQL("alter default privileges for role {} in schema {} grant select on tables to {}").format(
            builder, snapshots, analyst
        ),
    ]
    for statement in statements:
        conn.execute(statement)
