"""The raw schema's DDL (applied by `refinery db init`) and the check every load makes first.

Loads apply no DDL: they run as a member of `refiner_loader`, which may only read and write the
rows of the raw tables. `require_schema` makes a database that was never initialised (or was
initialised by an older or newer project) fail in one clear line instead of on a permission.
"""

from __future__ import annotations

from importlib import resources

import psycopg

from loaders.errors import ConfigurationError

RAW_SCHEMA_LOCK = 7_342_001  # advisory xact lock serialising `refinery db init` runs

# The version of the database schema this project expects (`raw.schema_version`); every change
# to it is a new migration of `refinery db init` and one more here.
SCHEMA_VERSION = 1

RAW_TABLES = ("raw.loads", "raw.tes_valuesets", "raw.configurations", "raw.rejected_records")
VERSION_TABLE = "raw.schema_version"


def raw_schema_sql() -> str:
    return resources.files("loaders.land").joinpath("schema.sql").read_text()


def schema_version(conn: psycopg.Connection) -> int | None:
    """The database's schema version, or None when `refinery db init` never ran on it."""
    if conn.execute("select to_regclass(%s)", (VERSION_TABLE,)).fetchone()[0] is None:
        return None
    row = conn.execute(f"select max(version) from {VERSION_TABLE}").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def version_error(found: int | None, expected: int = SCHEMA_VERSION) -> str | None:
    """Why a database at schema version `found` cannot be used by this project, or None."""
    if found is None:
        return "database not initialised: run `refinery db init` (as its owner or an administrator)"
    if found > expected:
        return (
            f"the database schema is version {found}, newer than this refinery's {expected}: "
            "upgrade refinery before running it against this database"
        )
    if found < expected:
        return (
            f"the database schema is version {found}, this refinery needs {expected}: "
            "run `refinery db init` (as its owner or an administrator) to upgrade it"
        )
    return None


def require_schema(conn: psycopg.Connection) -> None:
    """Raise a one-line ConfigurationError unless the database is at this project's schema version.

    Reads only (`to_regclass` and `raw.schema_version`), so a least-privilege role can run it;
    leaves no transaction open.
    """
    with conn.transaction():
        problem = version_error(schema_version(conn))
    if problem is not None:
        raise ConfigurationError(problem)
