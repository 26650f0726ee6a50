"""The raw schema's DDL, applied idempotently."""

from __future__ import annotations

from importlib import resources

import psycopg

RAW_SCHEMA_LOCK = 7_342_001  # advisory xact lock serialising concurrent DDL


def raw_schema_sql() -> str:
    return resources.files("loaders.land").joinpath("schema.sql").read_text()


RAW_TABLES = ("raw.loads", "raw.tes_valuesets", "raw.configurations", "raw.rejected_records")
# Columns added after the first release: a database that lacks one is brought up to date.
ADDED_COLUMNS = (("raw.loads", "updated_count"), ("raw.loads", "deleted_count"))


def raw_schema_exists(conn: psycopg.Connection) -> bool:
    """Every raw table and added column is there (checked without needing CREATE privileges)."""
    row = conn.execute(
        "select bool_and(to_regclass(name) is not null) from unnest(%s::text[]) as t (name)",
        (list(RAW_TABLES),),
    ).fetchone()
    if not (row and row[0]):
        return False
    for table, column in ADDED_COLUMNS:
        found = conn.execute(
            "select 1 from pg_attribute where attrelid = %s::regclass and attname = %s and not attisdropped",
            (table, column),
        ).fetchone()
        if not found:
            return False
    return True


def ensure_raw_schema(conn: psycopg.Connection) -> None:
    """Create schema `raw` and its tables when missing (safe to run concurrently).

    When they all exist nothing is executed, so a least-privilege loader role (which may not
    CREATE in the database) can load into tables the owner created.
    """
    with conn.transaction():
        if raw_schema_exists(conn):
            return
        conn.execute("select pg_advisory_xact_lock(%s)", (RAW_SCHEMA_LOCK,))
        conn.execute(raw_schema_sql())
