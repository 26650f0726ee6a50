"""Seed and drive the row-trigger design (bench/trigger_design.sql) the way the original did.

Two feeds of the same inputs, each phase timed including its commit:
- `rows`: one `cursor.execute` per row inside one connection, exactly like the original
  `database_seeding.py`: groupers first, then references (each fires the parent
  re-aggregation), then configurations (each fires one cache upsert);
- `copy`: the same rows in the same order through `COPY ... FROM STDIN`, one COPY per table. Row
  triggers fire for COPY too, so the triggers do the same work; only the per-row round trips go.
  This is the trigger design at its best for a first load.

`python -m bench.trigger_design --feed rows|copy --dsn DSN --tes DIR --configurations FILE
--jurisdictions CSV` seeds a fresh database in a process of its own (as the original's seeder ran)
and prints its phase timings as one JSON line; the benchmark times that process's wall clock the
way it times `refinery` commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from bench.tes_files import ORIGINAL_SYSTEMS, Grouper

SCHEMA = "original"
CODE_COLUMNS = tuple(ORIGINAL_SYSTEMS)

_INSERT_CONDITION = (
    "insert into tes_condition_groupers (canonical_url, version, display_name, loinc_codes, "
    "snomed_codes, icd10_codes, rxnorm_codes) values (%(canonical_url)s, %(version)s, "
    "%(display_name)s, %(loinc_codes)s, %(snomed_codes)s, %(icd10_codes)s, %(rxnorm_codes)s) "
    "on conflict do nothing"
)
_INSERT_RS = (
    "insert into tes_reporting_spec_groupers (canonical_url, version, display_name, snomed_code, "
    "loinc_codes, snomed_codes, icd10_codes, rxnorm_codes) values (%(canonical_url)s, %(version)s, "
    "%(display_name)s, %(snomed_code)s, %(loinc_codes)s, %(snomed_codes)s, %(icd10_codes)s, "
    "%(rxnorm_codes)s) on conflict do nothing"
)
_INSERT_REFERENCE = (
    "insert into tes_condition_grouper_references (parent_grouper_url, parent_grouper_version, "
    "child_grouper_url, child_grouper_version) values (%s, %s, %s, %s)"
)
_UPDATE_RS = (
    "update tes_reporting_spec_groupers set loinc_codes = %(loinc_codes)s, "
    "snomed_codes = %(snomed_codes)s, icd10_codes = %(icd10_codes)s, "
    "rxnorm_codes = %(rxnorm_codes)s, updated_at = now() "
    "where canonical_url = %(canonical_url)s and version = %(version)s"
)
_CONFIG_COLUMNS = (
    "id",
    "jurisdiction_id",
    "child_grouper_url",
    "child_grouper_version",
    "display_name_override",
    "version",
    "loinc_codes",
    "snomed_codes",
    "icd10_codes",
    "rxnorm_codes",
    "is_active",
    "created_by",
    "created_at",
    "updated_at",
)
_INSERT_CONFIGURATION = (
    f"insert into configurations ({', '.join(_CONFIG_COLUMNS)}) values "
    f"({', '.join(f'%({c})s' for c in _CONFIG_COLUMNS)})"
)
_UPDATE_CONFIGURATION = (
    "update configurations set jurisdiction_id = %(jurisdiction_id)s, "
    "child_grouper_url = %(child_grouper_url)s, child_grouper_version = %(child_grouper_version)s, "
    "display_name_override = %(display_name_override)s, version = %(version)s, "
    "loinc_codes = %(loinc_codes)s, snomed_codes = %(snomed_codes)s, icd10_codes = %(icd10_codes)s, "
    "rxnorm_codes = %(rxnorm_codes)s, is_active = %(is_active)s, updated_at = %(updated_at)s "
    "where id = %(id)s"
)


@dataclass
class SeedTimings:
    """Seconds per phase of one row-by-row seed, and what was written."""

    groupers_s: float = 0.0
    references_s: float = 0.0
    configurations_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.groupers_s + self.references_s + self.configurations_s


def schema_sql() -> str:
    return resources.files("bench").joinpath("trigger_design.sql").read_text()


def connect(conninfo: str) -> psycopg.Connection:
    """A connection whose search_path is the trigger design's schema."""
    return psycopg.connect(conninfo, options=f"-c search_path={SCHEMA}")


def install(conn: psycopg.Connection) -> None:
    """(Re)create the trigger design's schema, tables, functions and triggers."""
    conn.execute(f"drop schema if exists {SCHEMA} cascade")
    conn.execute(schema_sql())
    conn.execute(f"set search_path = {SCHEMA}")
    conn.commit()


def _grouper_record(grouper: Grouper) -> dict[str, Any]:
    record: dict[str, Any] = {
        "canonical_url": grouper.canonical_url,
        "version": grouper.version,
        "display_name": grouper.display_name,
        "snomed_code": grouper.snomed_code,
    }
    for column in CODE_COLUMNS:
        record[column] = json.dumps(grouper.codes[column])
    return record


def _configuration_record(config: dict[str, Any]) -> dict[str, Any]:
    record = {column: config.get(column) for column in _CONFIG_COLUMNS}
    for column in CODE_COLUMNS:
        record[column] = json.dumps(list(config.get(column) or []))
    record["is_active"] = bool(config.get("is_active", False))
    record["version"] = None if config.get("version") is None else str(config["version"])
    record["created_by"] = None if config.get("created_by") is None else str(config["created_by"])
    return record


def seed_jurisdictions(conn: psycopg.Connection, jurisdictions: Iterable[tuple[str, str, str | None]]) -> int:
    count = 0
    with conn.cursor() as cur:
        for jurisdiction_id, name, state_code in jurisdictions:
            cur.execute(
                "insert into jurisdictions (id, name, state_code) values (%s, %s, %s) on conflict do nothing",
                (jurisdiction_id, name, state_code),
            )
            count += 1
    conn.commit()
    return count


def load_groupers(conn: psycopg.Connection, groupers: Sequence[Grouper], timings: SeedTimings) -> None:
    """Pass 1 (groupers) and pass 2 (references), one execute per row, each phase committed."""
    started = time.perf_counter()
    with conn.cursor() as cur:
        for grouper in groupers:
            sql = _INSERT_RS if grouper.kind == "reporting_spec_grouper" else _INSERT_CONDITION
            cur.execute(sql, _grouper_record(grouper))
    conn.commit()
    timings.groupers_s += time.perf_counter() - started

    # Like the original: a reference only when the child is a known RS grouper.
    rs_keys = {
        (url, version)
        for url, version in conn.execute(
            "select canonical_url, version from tes_reporting_spec_groupers"
        ).fetchall()
    }
    references = [
        (g.canonical_url, g.version, url, version)
        for g in groupers
        if g.kind == "condition_grouper"
        for url, version in g.children
        if (url, version) in rs_keys
    ]
    conn.commit()
    started = time.perf_counter()
    with conn.cursor() as cur:
        for reference in references:
            cur.execute(_INSERT_REFERENCE, reference)
    conn.commit()
    timings.references_s += time.perf_counter() - started
    timings.counts["groupers"] = timings.counts.get("groupers", 0) + len(groupers)
    timings.counts["references"] = timings.counts.get("references", 0) + len(references)


def insertable(conn: psycopg.Connection, configurations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Configurations the original's foreign keys accept, ordered so the last write wins like
    this project's rule (latest updated_at, then highest id)."""
    jurisdictions = {row[0] for row in conn.execute("select id from jurisdictions").fetchall()}
    children = {
        (url, version)
        for url, version in conn.execute(
            "select canonical_url, version from tes_reporting_spec_groupers"
        ).fetchall()
    }
    conn.commit()
    accepted = [
        c
        for c in configurations
        if c.get("jurisdiction_id") in jurisdictions
        and (c.get("child_grouper_url"), c.get("child_grouper_version")) in children
    ]
    return sorted(accepted, key=lambda c: (str(c.get("updated_at") or ""), int(c["id"])))


def load_configurations(
    conn: psycopg.Connection, configurations: Sequence[dict[str, Any]], timings: SeedTimings
) -> None:
    """Pass 3: one insert per configuration; each fires the cache upsert trigger."""
    rows = [_configuration_record(c) for c in insertable(conn, configurations)]
    started = time.perf_counter()
    with conn.cursor() as cur:
        for row in rows:
            cur.execute(_INSERT_CONFIGURATION, row)
    conn.commit()
    timings.configurations_s += time.perf_counter() - started
    timings.counts["configurations"] = len(rows)
    timings.counts["configurations_refused"] = len(configurations) - len(rows)


def seed(
    conn: psycopg.Connection,
    jurisdictions: Iterable[tuple[str, str, str | None]],
    groupers: Sequence[Grouper],
    configurations: Sequence[dict[str, Any]],
) -> SeedTimings:
    """The whole original seed on an installed schema."""
    timings = SeedTimings()
    timings.counts["jurisdictions"] = seed_jurisdictions(conn, jurisdictions)
    load_groupers(conn, groupers, timings)
    load_configurations(conn, configurations, timings)
    timings.counts["cache_rows"] = cache_row_count(conn)
    return timings


def _copy_rows(
    conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    with conn.cursor() as cur, cur.copy(f"copy {table} ({', '.join(columns)}) from stdin") as copy:
        for row in rows:
            copy.write_row(row)


_GROUPER_COLUMNS = ("canonical_url", "version", "display_name", *CODE_COLUMNS)


def unique_groupers(groupers: Sequence[Grouper]) -> list[Grouper]:
    """The groupers the row-by-row feed's `on conflict do nothing` keeps: the first of each primary
    key, and for RS groupers also the first of each (snomed_code, version)."""
    kept: list[Grouper] = []
    seen: set[tuple[str, ...]] = set()
    for grouper in groupers:
        keys = [(grouper.kind, grouper.canonical_url, grouper.version)]
        if grouper.kind == "reporting_spec_grouper":
            keys.append((grouper.kind, "snomed", str(grouper.snomed_code), grouper.version))
        if any(key in seen for key in keys):
            continue
        seen.update(keys)
        kept.append(grouper)
    return kept


def copy_jurisdictions(conn: psycopg.Connection, jurisdictions: Iterable[tuple[str, str, str | None]]) -> int:
    rows = list({ident: (ident, name, state) for ident, name, state in jurisdictions}.values())
    _copy_rows(conn, "jurisdictions", ("id", "name", "state_code"), rows)
    conn.commit()
    return len(rows)


def copy_groupers(conn: psycopg.Connection, groupers: Sequence[Grouper], timings: SeedTimings) -> None:
    """Pass 1 and pass 2 through COPY: the groupers, then the references (the reference trigger
    re-aggregates the parent once per reference row, as in the row-by-row feed)."""
    kept = unique_groupers(groupers)
    started = time.perf_counter()
    conditions = [g for g in kept if g.kind == "condition_grouper"]
    specs = [g for g in kept if g.kind == "reporting_spec_grouper"]

    def values(grouper: Grouper) -> list[Any]:
        record = _grouper_record(grouper)
        return [record[column] for column in _GROUPER_COLUMNS]

    _copy_rows(conn, "tes_condition_groupers", _GROUPER_COLUMNS, map(values, conditions))
    _copy_rows(
        conn,
        "tes_reporting_spec_groupers",
        (*_GROUPER_COLUMNS, "snomed_code"),
        ([*values(g), g.snomed_code] for g in specs),
    )
    conn.commit()
    timings.groupers_s += time.perf_counter() - started

    rs_keys = {(g.canonical_url, g.version) for g in specs}
    references = [
        (g.canonical_url, g.version, url, version)
        for g in conditions
        for url, version in g.children
        if (url, version) in rs_keys
    ]
    started = time.perf_counter()
    _copy_rows(
        conn,
        "tes_condition_grouper_references",
        ("parent_grouper_url", "parent_grouper_version", "child_grouper_url", "child_grouper_version"),
        references,
    )
    conn.commit()
    timings.references_s += time.perf_counter() - started
    timings.counts["groupers"] = timings.counts.get("groupers", 0) + len(groupers)
    timings.counts["references"] = timings.counts.get("references", 0) + len(references)


def copy_configurations(
    conn: psycopg.Connection, configurations: Sequence[dict[str, Any]], timings: SeedTimings
) -> None:
    """Pass 3 through one COPY, in the row-by-row feed's order: the cache upsert trigger fires
    once per configuration row."""
    rows = [_configuration_record(c) for c in insertable(conn, configurations)]
    started = time.perf_counter()
    _copy_rows(conn, "configurations", _CONFIG_COLUMNS, ([row[c] for c in _CONFIG_COLUMNS] for row in rows))
    conn.commit()
    timings.configurations_s += time.perf_counter() - started
    timings.counts["configurations"] = len(rows)
    timings.counts["configurations_refused"] = len(configurations) - len(rows)


def seed_copy(
    conn: psycopg.Connection,
    jurisdictions: Iterable[tuple[str, str, str | None]],
    groupers: Sequence[Grouper],
    configurations: Sequence[dict[str, Any]],
) -> SeedTimings:
    """The whole seed fed through COPY (triggers firing) on an installed schema."""
    timings = SeedTimings()
    timings.counts["jurisdictions"] = copy_jurisdictions(conn, jurisdictions)
    copy_groupers(conn, groupers, timings)
    copy_configurations(conn, configurations, timings)
    timings.counts["cache_rows"] = cache_row_count(conn)
    return timings


FEEDS = {"rows": seed, "copy": seed_copy}


def update_configurations(conn: psycopg.Connection, changed: Sequence[dict[str, Any]]) -> float:
    """Seconds to apply edited configurations as the application would: one UPDATE per row."""
    rows = [_configuration_record(c) for c in changed]
    started = time.perf_counter()
    with conn.cursor() as cur:
        for row in rows:
            cur.execute(_UPDATE_CONFIGURATION, row)
    conn.commit()
    return time.perf_counter() - started


def republish_groupers(conn: psycopg.Connection, groupers: Sequence[Grouper]) -> float:
    """Seconds to apply re-published RS grouper content as UPDATEs, one per grouper: each fires
    the parent re-aggregation, which fires the cache upsert of every configuration below it."""
    rows = [_grouper_record(g) for g in groupers]
    started = time.perf_counter()
    with conn.cursor() as cur:
        for row in rows:
            cur.execute(_UPDATE_RS, row)
    conn.commit()
    return time.perf_counter() - started


def cache_row_count(conn: psycopg.Connection) -> int:
    count = conn.execute("select count(*) from refinement_cache").fetchone()
    conn.commit()
    return int(count[0]) if count else 0


def cache_keys(conn: psycopg.Connection) -> set[tuple[str, str]]:
    rows = conn.execute("select snomed_code, jurisdiction_id from refinement_cache").fetchall()
    conn.commit()
    return {(str(s), str(j)) for s, j in rows}


def cache_codes(conn: psycopg.Connection) -> dict[tuple[str, str], set[str]]:
    rows = conn.execute(
        "select snomed_code, jurisdiction_id, aggregated_codes from refinement_cache"
    ).fetchall()
    conn.commit()
    return {(str(s), str(j)): set(codes) for s, j, codes in rows}


def main(argv: Sequence[str] | None = None) -> int:
    """Install the schema in the given (fresh) database and seed it with one feed; print the
    phase timings as one JSON line."""
    from bench import project
    from bench.tes_files import read_configurations, read_groupers

    parser = argparse.ArgumentParser(prog="python -m bench.trigger_design")
    parser.add_argument("--feed", choices=sorted(FEEDS), required=True)
    parser.add_argument("--dsn", required=True, help="libpq connection string of a fresh database")
    parser.add_argument("--tes", type=Path, required=True, help="TES files folder")
    parser.add_argument("--configurations", type=Path, required=True)
    parser.add_argument("--jurisdictions", type=Path, required=True, help="the jurisdictions seed CSV")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    groupers = read_groupers([args.tes])
    configurations = read_configurations(args.configurations)
    parsed_s = time.perf_counter() - started
    with connect(args.dsn) as conn:
        install(conn)
        timings = FEEDS[args.feed](conn, project.jurisdictions(args.jurisdictions), groupers, configurations)
    print(
        json.dumps(
            {
                "feed": args.feed,
                "parse_s": parsed_s,
                "groupers_s": timings.groupers_s,
                "references_s": timings.references_s,
                "configurations_s": timings.configurations_s,
                "counts": timings.counts,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
