"""Shared by the reliability suite: the CLI in a subprocess, table fingerprints, small TES data."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from refinery.connection import DatabaseSettings
from tests.conftest import REPO, env_for

TES = "https://tes.example.org/fhir/ValueSet"
SNOMED = "http://snomed.info/sct"
REFINER_SCHEMAS = ("refiner", "refiner_staging", "refiner_intermediate", "refiner_snapshots")


def refinery(
    args: Sequence[str],
    settings: DatabaseSettings,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """`python -m refinery.cli ARGS` in a subprocess pointed at `settings`."""
    return subprocess.run(
        [sys.executable, "-m", "refinery.cli", *args],
        env={**env_for(settings), **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_refinery(
    args: Sequence[str], settings: DatabaseSettings, *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "refinery.cli", *args],
        env={**env_for(settings), **(env or {})},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def connect(settings: DatabaseSettings) -> psycopg.Connection:
    return psycopg.connect(settings.conninfo(), autocommit=True)


def query(settings: DatabaseSettings, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with connect(settings) as conn:
        return conn.execute(statement, params).fetchall()


def execute(settings: DatabaseSettings, statement: str, params: Any = None) -> None:
    with connect(settings) as conn:
        conn.execute(statement, params)


def tables(settings: DatabaseSettings, schemas: Sequence[str]) -> list[tuple[str, str]]:
    """(schema, table) of every base table in `schemas`."""
    return [
        (schema, name)
        for schema, name in query(
            settings,
            "select table_schema, table_name from information_schema.tables"
            " where table_schema = any(%s) and table_type = 'BASE TABLE'"
            " order by table_schema, table_name",
            (list(schemas),),
        )
    ]


def table_hashes(
    settings: DatabaseSettings,
    schemas: Sequence[str] = ("raw",),
    *,
    without_failed_loads: bool = True,
    exclude: Sequence[str] = (),
) -> dict[str, tuple[int, str]]:
    """(row count, md5 of all rows as text, sorted) of every base table in `schemas`.

    raw.loads is hashed without its 'failed' rows when `without_failed_loads` (a refused load
    writes exactly that row and nothing else); `exclude` names tables ("schema.table") to skip.
    """
    out: dict[str, tuple[int, str]] = {}
    with connect(settings) as conn:
        for schema, name in tables(settings, schemas):
            key = f"{schema}.{name}"
            if key in exclude:
                continue
            where = sql.SQL(
                "where t.status <> 'failed'" if (key == "raw.loads" and without_failed_loads) else ""
            )
            count, digest = conn.execute(
                sql.SQL(
                    "select count(*), md5(coalesce(string_agg(t::text, E'\\n' order by t::text), ''))"
                    " from {}.{} as t {}"
                ).format(sql.Identifier(schema), sql.Identifier(name), where)
            ).fetchone()
            out[key] = (int(count), str(digest))
    return out


def loads(settings: DatabaseSettings) -> list[tuple[int, str, str, str | None]]:
    """(load_id, kind, status, error) of every raw.loads row."""
    if query(settings, "select to_regclass('raw.loads')")[0][0] is None:
        return []
    return [
        (int(load_id), kind, status, error)
        for load_id, kind, status, error in query(
            settings, "select load_id, kind, status, error from raw.loads order by load_id"
        )
    ]


def valueset(
    name: str,
    version: str = "1.0.0",
    codes: Sequence[str] = ("840539006", "1240581000000104"),
    *,
    title: str | None = None,
    system: str = SNOMED,
) -> dict[str, Any]:
    """A small ValueSet (no grouper profile: an additional context grouper downstream)."""
    return {
        "resourceType": "ValueSet",
        "id": name,
        "url": f"{TES}/{name}",
        "version": version,
        "name": name.replace("-", "_"),
        "title": title or name,
        "status": "active",
        "compose": {"include": [{"system": system, "concept": [{"code": c} for c in codes]}]},
    }


def write_json(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def folder_state(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime (ns) of every file under `folder`, by relative path."""
    return {
        str(path.relative_to(folder)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# --- synthetic inputs, mutations and the cache ---------------------------------------------------


def synthetic_inputs(folder: Path, *, seed: int = 11) -> tuple[Path, Path]:
    """Small synthetic TES files and configurations: (tes_dir, configurations_file)."""
    from refinery.synthetic import SyntheticSpec, generate

    summary = generate(
        folder,
        SyntheticSpec(seed=seed, conditions=30, jurisdictions=3, configurations_per_jurisdiction=20),
    )
    return summary.tes_dir, summary.configurations_file


def mutated_configurations(source: Path, target: Path) -> Path:
    """A new snapshot: some deactivated, some edited, some deleted, one added."""
    records = json.loads(source.read_text(encoding="utf-8"))
    changed: list[dict[str, Any]] = []
    for number, record in enumerate(records):
        record = dict(record)
        if number % 11 == 3:
            continue  # deleted
        if number % 5 == 1:
            record["is_active"] = False
        if number % 7 == 2:
            record["loinc_codes"] = [*record.get("loinc_codes", []), "99999-9"]
            record["updated_at"] = "2030-01-01T00:00:00Z"
        changed.append(record)
    added = dict(records[0], id=max(int(r["id"]) for r in records) + 1, jurisdiction_id="TX")
    changed.append(added)
    return write_json(target, changed)


def cache_rows(settings: DatabaseSettings) -> list[Any]:
    """refinement_cache without updated_at and written_at (when the rows were written), in key order."""
    return [
        row[0]
        for row in query(
            settings,
            "select to_jsonb(cache) - 'updated_at' - 'written_at' from refiner.refinement_cache as cache"
            " order by cache.snomed_code, cache.jurisdiction_id",
        )
    ]


def wait_idle(settings: DatabaseSettings, timeout: float = 60) -> None:
    """Wait until no other session of this database is running a statement."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = query(
            settings,
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and pid <> pg_backend_pid() and state <> 'idle'",
        )[0][0]
        if not busy:
            return
        time.sleep(0.1)
    raise AssertionError("the database stayed busy")


def wait_for_query(settings: DatabaseSettings, pattern: str, process: Any, timeout: float = 300) -> None:
    """Wait until another session of this database runs a statement like `pattern` (ILIKE)
    while `process` lives; fail with its output otherwise."""
    import time

    deadline = time.monotonic() + timeout
    with psycopg.connect(settings.conninfo(), autocommit=True) as admin:
        while time.monotonic() < deadline and process.poll() is None:
            found = admin.execute(
                "select 1 from pg_stat_activity where datname = current_database()"
                " and pid <> pg_backend_pid() and query ilike %s limit 1",
                (pattern,),
            ).fetchone()
            if found:
                return
            time.sleep(0.05)
    out, err = process.communicate(timeout=60) if process.poll() is not None else ("", "")
    raise AssertionError(f"no statement like {pattern} ran: {out[-2000:]} {err[-2000:]}")
