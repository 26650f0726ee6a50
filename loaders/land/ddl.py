"""The raw schema's DDL, applied idempotently."""

from __future__ import annotations

from importlib import resources

import psycopg

RAW_SCHEMA_LOCK = 7_342_001  # advisory xact lock serialising concurrent DDL


def raw_schema_sql() -> str:
    return resources.files("loaders.land").joinpath("schema.sql").read_text()


def ensure_raw_schema(conn: psycopg.Connection) -> None:
    """Create schema `raw` and its tables when missing (safe to run concurrently)."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (RAW_SCHEMA_LOCK,))
        conn.execute(raw_schema_sql())
