"""Helpers shared by the loader tests: small TES fixtures and table fingerprints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from refinery.connection import DatabaseSettings

TES = "https://tes.example.org/fhir/ValueSet"

# Every raw table, ordered by its key; raw.loads without its 'failed' rows (a failed load writes
# exactly that row and nothing else).
FINGERPRINTS = {
    "raw.tes_valuesets": "select md5(coalesce(string_agg(t::text, E'\\n' order by t.valueset_id), ''))"
    " from raw.tes_valuesets as t",
    "raw.configurations": "select md5(coalesce(string_agg(t::text, E'\\n' order by t.id), ''))"
    " from raw.configurations as t",
    "raw.rejected_records": "select md5(coalesce(string_agg(t::text, E'\\n' order by t.rejected_id), ''))"
    " from raw.rejected_records as t",
    "raw.loads": "select md5(coalesce(string_agg(t::text, E'\\n' order by t.load_id), ''))"
    " from raw.loads as t where t.status <> 'failed'",
}


def valueset(
    name: str,
    version: str = "1.0.0",
    codes: list[str] | None = None,
    *,
    title: str | None = None,
    system: str = "http://snomed.info/sct",
) -> dict[str, Any]:
    """A small RS-grouper-shaped ValueSet."""
    codes = ["840539006", "1240581000000104"] if codes is None else codes
    return {
        "resourceType": "ValueSet",
        "id": name,
        "url": f"{TES}/{name}",
        "version": version,
        "name": name.replace("-", "_"),
        "title": title or name,
        "status": "active",
        "compose": {
            "include": [
                {"system": system, "concept": [{"code": code, "display": f"code {code}"} for code in codes]}
            ]
        },
    }


def write_json(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def fetch_format(category: str, valuesets: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"category": category}, "valuesets": valuesets}


def fingerprint(settings: DatabaseSettings) -> dict[str, str | None]:
    """md5 of every raw table's rows (None when the table does not exist yet)."""
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        out: dict[str, str | None] = {}
        for table, query in FINGERPRINTS.items():
            exists = conn.execute("select to_regclass(%s)", (table,)).fetchone()[0]
            out[table] = conn.execute(query).fetchone()[0] if exists else None
        return out


def query(settings: DatabaseSettings, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def failed_loads(settings: DatabaseSettings) -> list[tuple[str, str]]:
    return [
        (kind, error)
        for kind, error in query(
            settings, "select kind, error from raw.loads where status = 'failed' order by load_id"
        )
    ]
