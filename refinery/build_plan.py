"""What a build must run, decided from the database: work in proportion to what changed.

Every successful planned build is recorded in `<target schema>.refinery_builds` with three
fingerprints of what it was built from:

- `tes`: the landed TES contents (`raw.tes_valuesets`: every row's id, content hash and
  `last_seen_load_id`; a TES load that changed nothing leaves it as it was);
- `configurations`: the configurations source's rows (the table the vars
  `configurations_schema` / `configurations_table` name, every column but `load_id`), so a
  snapshot loaded again unchanged, or the Refiner's live table, count only when a row did;
- `project`: the dbt project's files (models, macros, seeds, snapshots, tests, dbt_project.yml)
  and the dbt version.

The next build compares the current fingerprints with the latest record:

- nothing differs: plan `nothing`, dbt is not started;
- only the configurations: plan `configurations`, `dbt build --select
  source:refiner.configurations+` without the full recomputation test (the rows written are
  checked instead) and without unit tests (the SQL did not change);
- the TES data (the configurations too, or not), with the project unchanged: plan `tes`,
  `dbt build` of every model (incremental models stay incremental) with the checks of the rows
  the build wrote instead of the whole-cache ones, and without unit tests (the SQL did not
  change);
- the project (or no record, or an unplanned build since): plan `all`, `dbt build` (incremental
  models stay incremental) with every test, the whole-cache checks included;
- `--full-refresh` asked: plan `full_refresh`, `dbt build --full-refresh`.

The record lives in the database, beside what it describes, so a job that runs in a fresh
container plans like one that ran before (dbt's own state selection and source freshness need
the previous run's artifacts on a local disk; see docs/cache.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from refinery.paths import project_root

NOTHING = "nothing"
CONFIGURATIONS = "configurations"
TES = "tes"
ALL = "all"
FULL_REFRESH = "full_refresh"
UNPLANNED = "unplanned"  # recorded (with empty fingerprints) by a build run with its own dbt arguments

BUILDS_TABLE = "refinery_builds"
FULL_RECOMPUTATION_TAG = "full_recomputation"
WRITTEN_ROWS_TAG = "written_rows"
CONFIGURATIONS_SOURCE = "source:refiner.configurations"
KEPT_RECORDS = 1000

# what a plan that checks only the rows its build wrote leaves out: the whole-cache checks and
# the unit tests (the SQL did not change)
WRITTEN_ROWS_CHECKS = (
    "--exclude",
    f"tag:{FULL_RECOMPUTATION_TAG}",
    "--exclude-resource-type",
    "unit_test",
)

# what the project fingerprint reads (relative to the project root)
PROJECT_FOLDERS = ("models", "macros", "seeds", "snapshots", "tests/dbt", "analyses")
PROJECT_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml")

# every column of the configurations source the models may read (load_id is bookkeeping)
CONFIGURATION_COLUMNS = (
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


@dataclass(frozen=True)
class Inputs:
    """Fingerprints of what a build reads."""

    tes: str
    configurations: str
    project: str


@dataclass(frozen=True)
class BuildRecord:
    """The latest successful planned build."""

    build_id: int
    plan: str
    inputs: Inputs
    finished_at: datetime


@dataclass(frozen=True)
class Plan:
    """What to run and why."""

    kind: str  # NOTHING, CONFIGURATIONS, TES, ALL or FULL_REFRESH
    reason: str
    inputs: Inputs
    previous: BuildRecord | None

    @property
    def dbt_args(self) -> tuple[str, ...]:
        """The dbt command line of the plan (empty for NOTHING)."""
        if self.kind == NOTHING:
            return ()
        if self.kind == CONFIGURATIONS:
            return ("build", "--select", f"{CONFIGURATIONS_SOURCE}+", *WRITTEN_ROWS_CHECKS)
        if self.kind == TES:
            return ("build", *WRITTEN_ROWS_CHECKS)
        if self.kind == FULL_REFRESH:
            return ("build", "--full-refresh", "--exclude", f"tag:{WRITTEN_ROWS_TAG}")
        return ("build", "--exclude", f"tag:{WRITTEN_ROWS_TAG}")

    def describe(self) -> str:
        if self.kind == NOTHING:
            return f"nothing to build: {self.reason}"
        return f"plan {self.kind}: {self.reason}"


def builds_relation(schema: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(BUILDS_TABLE))


def project_fingerprint(root: Path | None = None) -> str:
    """SHA-256 of the dbt project's files (paths and bytes) and the dbt version."""
    from dbt.version import __version__ as dbt_version

    root = root or project_root()
    digest = hashlib.sha256(f"dbt {dbt_version}\n".encode())
    paths = [root / name for name in PROJECT_FILES if (root / name).is_file()]
    for folder in PROJECT_FOLDERS:
        if (root / folder).is_dir():
            paths.extend(path for path in (root / folder).rglob("*") if path.is_file())
    for path in sorted(paths, key=lambda item: item.relative_to(root).as_posix()):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def configurations_source(root: Path | None = None) -> tuple[str, str]:
    """(schema, table) of the configurations source: dbt_project.yml's vars."""
    project = yaml.safe_load(((root or project_root()) / "dbt_project.yml").read_text()) or {}
    variables = project.get("vars") or {}
    return (
        str(variables.get("configurations_schema", "raw")),
        str(variables.get("configurations_table", "configurations")),
    )


def _relation_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    found = conn.execute(
        "select 1 from pg_catalog.pg_class as c"
        " join pg_catalog.pg_namespace as n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = %s",
        (schema, table),
    ).fetchone()
    return found is not None


def tes_fingerprint(conn: psycopg.Connection) -> str:
    """Count and sum of the 64-bit hashes of every landed content's (id, sha256, last seen load)."""
    if not _relation_exists(conn, "raw", "tes_valuesets"):
        return "absent"
    row = conn.execute(
        """
        select count(*)::text || ':' || coalesce(sum(hashtextextended(
            valueset_id::text || ':' || resource_sha256 || ':' || last_seen_load_id::text, 0
        )), 0)::text
        from raw.tes_valuesets
        """
    ).fetchone()
    return str(row[0])


def configurations_fingerprint(conn: psycopg.Connection, source: tuple[str, str]) -> str:
    """Count and sum of the 64-bit hashes of the configurations source's rows (without load_id)."""
    schema, table = source
    if not _relation_exists(conn, schema, table):
        return "absent"
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in CONFIGURATION_COLUMNS)
    query = sql.SQL(
        "select count(*)::text || ':' || coalesce(sum(hashtextextended(row({columns})::text, 0)), 0)::text"
        " from {schema}.{table}"
    ).format(columns=columns, schema=sql.Identifier(schema), table=sql.Identifier(table))
    return str(conn.execute(query).fetchone()[0])


def current_inputs(conn: psycopg.Connection, root: Path | None = None) -> Inputs:
    return Inputs(
        tes=tes_fingerprint(conn),
        configurations=configurations_fingerprint(conn, configurations_source(root)),
        project=project_fingerprint(root),
    )


def latest_build(conn: psycopg.Connection, schema: str) -> BuildRecord | None:
    """The latest recorded successful build, or None (no table, no row)."""
    if not _relation_exists(conn, schema, BUILDS_TABLE):
        return None
    row = conn.execute(
        sql.SQL(
            "select build_id, plan, tes_fingerprint, configurations_fingerprint, project_fingerprint,"
            " finished_at from {} order by build_id desc limit 1"
        ).format(builds_relation(schema))
    ).fetchone()
    if row is None:
        return None
    return BuildRecord(row[0], row[1], Inputs(row[2], row[3], row[4]), row[5])


def decide(inputs: Inputs, previous: BuildRecord | None, *, full_refresh: bool = False) -> Plan:
    """The plan for `inputs` given the latest successful build."""
    if full_refresh:
        return Plan(FULL_REFRESH, "--full-refresh asked", inputs, previous)
    if previous is None:
        return Plan(ALL, "no successful build recorded", inputs, previous)
    changed = [
        name
        for name in ("project", "tes", "configurations")
        if getattr(inputs, name) != getattr(previous.inputs, name)
    ]
    since = f"since build {previous.build_id}"
    if previous.plan == UNPLANNED:
        reason = f"a build with its own dbt arguments ran (build {previous.build_id})"
        return Plan(ALL, reason, inputs, previous)
    if not changed:
        return Plan(NOTHING, f"no input changed {since}", inputs, previous)
    if changed == ["configurations"]:
        return Plan(CONFIGURATIONS, f"only the configurations changed {since}", inputs, previous)
    if "project" not in changed:
        return Plan(TES, f"{' and '.join(changed)} changed {since}", inputs, previous)
    return Plan(ALL, f"{' and '.join(changed)} changed {since}", inputs, previous)


def plan(conn: psycopg.Connection, schema: str, *, full_refresh: bool = False) -> Plan:
    """Read the fingerprints and the latest record, and decide."""
    return decide(current_inputs(conn), latest_build(conn, schema), full_refresh=full_refresh)


def record(
    conn: psycopg.Connection,
    schema: str,
    chosen: Plan,
    started_at: datetime,
    nodes: dict[str, Any],
) -> int | None:
    """Record a successful build of `chosen` (the table is created by the build's on-run-end hook).

    Returns the new build_id, or None when the table does not exist (nothing is recorded: the
    next build plans everything).
    """
    if not _relation_exists(conn, schema, BUILDS_TABLE):
        return None
    relation = builds_relation(schema)
    with conn.transaction():
        build_id = conn.execute(
            sql.SQL(
                "insert into {} (plan, tes_fingerprint, configurations_fingerprint, project_fingerprint,"
                " nodes, started_at) values (%s, %s, %s, %s, %s::jsonb, %s) returning build_id"
            ).format(relation),
            (
                chosen.kind,
                chosen.inputs.tes,
                chosen.inputs.configurations,
                chosen.inputs.project,
                json.dumps(nodes),
                started_at,
            ),
        ).fetchone()[0]
        conn.execute(
            sql.SQL("delete from {} where build_id <= %s").format(relation),
            (build_id - KEPT_RECORDS,),
        )
    return int(build_id)


def record_unplanned(conn: psycopg.Connection, schema: str) -> int | None:
    """Record that a build ran with its own dbt arguments (`refinery build --select ...`, a
    `--vars` override): it may have written models from other inputs or another project state
    than the latest record says, so the next planned build runs everything (`all`) instead of
    trusting the record. Recorded before that build starts, so a build that is killed or fails
    still leaves its mark. None when the table does not exist yet (the next planned build runs
    everything anyway) or when this login may not write it: a login that cannot record a build
    cannot have written the models either, and its dbt run reports its own permission error."""
    writable = conn.execute(
        "select has_schema_privilege(n.oid, 'usage') and has_table_privilege(c.oid, 'insert')"
        " from pg_catalog.pg_class as c"
        " join pg_catalog.pg_namespace as n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = %s",
        (schema, BUILDS_TABLE),
    ).fetchone()
    if writable is None or not writable[0]:  # no table yet, or this login may not write it
        return None
    row = conn.execute(
        sql.SQL(
            "insert into {} (plan, tes_fingerprint, configurations_fingerprint, project_fingerprint,"
            " nodes, started_at) values (%s, '', '', '', '{{}}'::jsonb, now()) returning build_id"
        ).format(builds_relation(schema)),
        (UNPLANNED,),
    ).fetchone()
    return int(row[0])


@dataclass(frozen=True)
class PlannedBuild:
    """A planned build's outcome: the plan, dbt's outcome (None when dbt was not started), the
    statuses of the nodes dbt ran, and the record written (None when not recorded)."""

    plan: Plan
    outcome: Any | None
    statuses: dict[str, int]
    build_id: int | None

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome is None else int(self.outcome.exit_code)


def node_statuses(outcome: Any) -> tuple[dict[str, int], list[str]]:
    """Counts of dbt's node statuses and the ids of the failed nodes."""
    statuses: dict[str, int] = {}
    failed: list[str] = []
    for item in getattr(getattr(outcome.result, "result", None), "results", None) or []:
        status = str(getattr(item.status, "value", item.status))
        statuses[status] = statuses.get(status, 0) + 1
        if status in ("error", "fail", "runtime error"):
            failed.append(item.node.unique_id)
    return statuses, failed


def run_planned(
    settings: Any,
    *,
    full_refresh: bool = False,
    dbt_flags: tuple[str, ...] = (),
    announce: Callable[[Plan], None] | None = None,
) -> PlannedBuild:
    """Plan from the database, run the plan's dbt build (if any) and record it when it succeeded.

    `announce` is told the plan before dbt starts."""
    from datetime import UTC

    from refinery import connection, dbt

    schema = dbt.target_schema()
    with connection.connect(settings) as conn:
        chosen = plan(conn, schema, full_refresh=full_refresh)
    if announce is not None:
        announce(chosen)
    if chosen.kind == NOTHING:
        return PlannedBuild(chosen, None, {}, None)
    started_at = datetime.now(UTC)
    outcome = dbt.run([*chosen.dbt_args, *dbt_flags], settings)
    statuses, _ = node_statuses(outcome)
    build_id = None
    if outcome.exit_code == 0:
        with connection.connect(settings) as conn:
            build_id = record(conn, schema, chosen, started_at, statuses)
    return PlannedBuild(chosen, outcome, statuses, build_id)
