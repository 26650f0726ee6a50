"""`refinery export`: write the payloads as the files today's eCR Refiner reads.

Layout and format: docs/export.md (schema version 1). The database decides what is written:
`refiner.refiner_payload_versions` (dbt) numbers every payload content ever built; this module
only renders the current versions and writes them safely for a reader polling the folder:

- every file goes through a temporary name in its own folder, then an atomic rename;
- in the application's order: every `active.json` + `metadata.json` first, then each
  jurisdiction's `rsg_cg_mapping.json`, then the `current.json` files, so a reader never meets a
  `current.json` naming a version whose files are not there yet (a crash midway leaves the old
  `current.json`, naming old files that are still there; the next export completes the rest);
- a file whose bytes would not change is not touched (an unchanged export rewrites nothing, so
  bytes and mtimes stay as they were);
- `configurations/maintenance.lock` is never written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from loaders.errors import ConfigurationError, InvalidInputError
from refinery import connection
from refinery.connection import DatabaseSettings

SCHEMA_VERSION = 1
SET_KEYS = ("loinc", "snomed", "rxnorm", "icd10", "cvx", "other")
SECTION_FIELDS = ("include", "narrative", "action", "name", "code", "versions", "section_type")
VERSIONS_TABLE = "refiner_payload_versions"
TEMP_MARK = ".tmp-"

_JURISDICTION_FOLDER = re.compile(r"^[A-Z0-9][A-Z0-9_-]*$")
_UUID_FOLDER = re.compile(r"^[0-9a-z][0-9a-z-]*$")


@dataclass(frozen=True)
class Payload:
    """One current payload version: what goes in `<JD>/<CG_UUID>/<VERSION>/`."""

    jurisdiction: str  # the folder name: the routing code, upper case
    condition_url: str
    condition_uuid: str
    tes_version: str
    condition_name: str
    folder_name: str
    version: int
    rsg_codes: tuple[str, ...]
    code_system_sets: dict[str, Any]
    sections: list[dict[str, Any]]


@dataclass(frozen=True)
class Pointer:
    """A (jurisdiction, condition) ever exported and the version its `current.json` names."""

    jurisdiction: str
    condition_uuid: str
    version: int | None


@dataclass(frozen=True)
class ExportPlan:
    payloads: list[Payload]
    pointers: list[Pointer]
    jurisdictions: list[str]  # every jurisdiction folder that gets a mapping


@dataclass
class ExportResult:
    payloads: int = 0
    jurisdictions: int = 0
    deactivated: int = 0
    written: list[Path] = field(default_factory=list)
    unchanged: int = 0

    def describe(self, out: Path) -> str:
        return (
            f"exported {self.payloads} payload(s) of {self.jurisdictions} jurisdiction(s) to {out}"
            f" ({self.deactivated} deactivated): {len(self.written)} file(s) written,"
            f" {self.unchanged} unchanged"
        )


# --- reading the plan -----------------------------------------------------------------------------


def _folder(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise InvalidInputError(f"{what} {value!r} cannot be a folder name in the export")
    return value


def read_plan(
    settings: DatabaseSettings, schema: str = "refiner", jurisdictions: Sequence[str] | None = None
) -> ExportPlan:
    """The current payloads and every pointer, read in one consistent snapshot of the database."""
    wanted = sorted({code.strip().upper() for code in jurisdictions or [] if code.strip()})
    with connection.connect(settings) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        found = conn.execute("select to_regclass(%s)", (f"{schema}.{VERSIONS_TABLE}",)).fetchone()
        if not found or found[0] is None:
            raise ConfigurationError(
                f"{schema}.{VERSIONS_TABLE} does not exist: run `refinery build` before exporting"
            )
        table = sql.Identifier(schema, VERSIONS_TABLE)
        if wanted:
            known = {
                str(row[0]).upper()
                for row in conn.execute(
                    sql.SQL("select routing_code from {}").format(sql.Identifier(schema, "jurisdictions"))
                )
            }
            unknown = [code for code in wanted if code not in known]
            if unknown:
                raise ConfigurationError(f"unknown jurisdiction(s): {', '.join(unknown)}")
        where = sql.SQL("where upper(jurisdiction_id) = any(%(wanted)s)" if wanted else "")
        rows = conn.execute(
            sql.SQL(
                """
                select
                    jurisdiction_id, condition_grouper_url, condition_grouper_uuid,
                    condition_grouper_version, condition_name, condition_folder_name,
                    version, current_version, is_current, included_condition_rsg_codes,
                    code_system_sets, sections
                from {table} {where}
                order by jurisdiction_id, condition_grouper_uuid, version
                """
            ).format(table=table, where=where),
            {"wanted": wanted},
        ).fetchall()
    return _plan(rows, wanted)


def _plan(rows: Iterable[tuple[Any, ...]], wanted: Sequence[str]) -> ExportPlan:
    payloads: list[Payload] = []
    pointers: dict[tuple[str, str], Pointer] = {}
    owners: dict[str, str] = {}
    for (
        jurisdiction_id,
        url,
        uuid,
        tes_version,
        name,
        folder_name,
        version,
        current,
        is_current,
        rsg_codes,
        code_system_sets,
        sections,
    ) in rows:
        jurisdiction = _folder(str(jurisdiction_id).upper(), _JURISDICTION_FOLDER, "jurisdiction")
        if owners.setdefault(jurisdiction, jurisdiction_id) != jurisdiction_id:
            raise InvalidInputError(
                f"jurisdictions {owners[jurisdiction]!r} and {jurisdiction_id!r}"
                f" share the folder {jurisdiction}"
            )
        condition_uuid = _folder(str(uuid), _UUID_FOLDER, f"condition grouper {url}: folder")
        pointers[(jurisdiction, condition_uuid)] = Pointer(jurisdiction, condition_uuid, current)
        if is_current:
            payloads.append(
                Payload(
                    jurisdiction=jurisdiction,
                    condition_url=url,
                    condition_uuid=condition_uuid,
                    tes_version=tes_version,
                    condition_name=name,
                    folder_name=folder_name,
                    version=int(version),
                    rsg_codes=tuple(rsg_codes),
                    code_system_sets=code_system_sets,
                    sections=sections,
                )
            )
    folders = sorted({pointer.jurisdiction for pointer in pointers.values()} | set(wanted))
    return ExportPlan(payloads, list(pointers.values()), folders)


# --- the documents ----------------------------------------------------------------------------------


def active_document(payload: Payload) -> dict[str, Any]:
    """`active.json`: the four keys in the application's order, checked before it is written."""
    where = f"{payload.jurisdiction}/{payload.condition_uuid} version {payload.version}"
    sets: dict[str, list[dict[str, str]]] = {}
    for key in SET_KEYS:
        entries = []
        for entry in payload.code_system_sets.get(key) or []:
            item = {name: entry.get(name) for name in ("code", "display", "system")}
            bad = [name for name, value in item.items() if not isinstance(value, str)]
            if bad:
                raise InvalidInputError(f"{where}: {key} code {item['code']!r} has no string {bad[0]}")
            entries.append(item)
        sets[key] = entries
    if not payload.rsg_codes:
        raise InvalidInputError(f"{where}: no RS grouper code")
    return {
        "schema_version": SCHEMA_VERSION,
        "code_system_sets": sets,
        "sections": [{name: section[name] for name in SECTION_FIELDS} for section in payload.sections],
        "included_condition_rsg_codes": sorted(set(payload.rsg_codes)),
    }


def metadata_document(payload: Payload) -> dict[str, Any]:
    return {
        "condition_name": payload.condition_name,
        "canonical_url": payload.condition_url,
        "tes_version": payload.tes_version,
        "jurisdiction_id": payload.jurisdiction,
        "configuration_version": payload.version,
        "child_rsg_snomed_codes": sorted(set(payload.rsg_codes)),
    }


def mapping_document(payloads: Iterable[Payload]) -> dict[str, Any]:
    """`rsg_cg_mapping.json` of one jurisdiction: every RS grouper code of its current payloads."""
    mapping: dict[str, dict[str, str]] = {}
    for payload in payloads:
        value = {
            "canonical_url": payload.condition_url,
            "name": payload.folder_name,
            "tes_version": payload.tes_version,
        }
        for code in payload.rsg_codes:
            if mapping.setdefault(code, value) is not value and mapping[code] != value:
                raise InvalidInputError(
                    f"{payload.jurisdiction}: RS grouper code {code} maps to two condition groupers "
                    f"({mapping[code]['canonical_url']} and {payload.condition_url})"
                )
    return {code: mapping[code] for code in sorted(mapping)}


def render(document: Any) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# --- writing -------------------------------------------------------------------------------------------


def _replace(source: Path, target: Path) -> None:
    """The atomic rename (a seam: the crash tests make it fail midway)."""
    os.replace(source, target)


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` to `path` through a temporary name and a rename, unless it already holds it."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _remove_leftovers(root: Path) -> None:
    """Temporary files an interrupted export left behind (never read: their names start with a dot)."""
    if root.is_dir():
        for leftover in root.rglob(f".*{TEMP_MARK}*"):
            if leftover.is_file():
                leftover.unlink(missing_ok=True)


Step = Callable[[Path, bool], None]


def planned_files(plan: ExportPlan, out: Path) -> list[tuple[Path, bytes]]:
    """Every file of the plan, in the order it must be written."""
    root = out / "configurations"
    files: list[tuple[Path, bytes]] = []
    for payload in plan.payloads:
        folder = root / payload.jurisdiction / payload.condition_uuid / str(payload.version)
        files.append((folder / "active.json", render(active_document(payload))))
        files.append((folder / "metadata.json", render(metadata_document(payload))))
    for jurisdiction in plan.jurisdictions:
        current = [payload for payload in plan.payloads if payload.jurisdiction == jurisdiction]
        files.append((root / jurisdiction / "rsg_cg_mapping.json", render(mapping_document(current))))
    for pointer in sorted(plan.pointers, key=lambda item: (item.jurisdiction, item.condition_uuid)):
        path = root / pointer.jurisdiction / pointer.condition_uuid / "current.json"
        files.append((path, render({"version": pointer.version})))
    return files


def export(plan: ExportPlan, out: Path, *, on_file: Step | None = None) -> ExportResult:
    """Write the plan under `out/configurations/` (see the module docstring for the guarantees)."""
    files = planned_files(plan, out)  # every document is rendered and checked before any write
    result = ExportResult(
        payloads=len(plan.payloads),
        jurisdictions=len(plan.jurisdictions),
        deactivated=sum(pointer.version is None for pointer in plan.pointers),
    )
    try:
        _remove_leftovers(out / "configurations")
        for path, data in files:
            changed = write_if_changed(path, data)
            if changed:
                result.written.append(path)
            else:
                result.unchanged += 1
            if on_file is not None:
                on_file(path, changed)
    except OSError as exc:
        where = exc.filename or out
        raise ConfigurationError(f"{where}: cannot write the export: {exc.strerror or exc}") from exc
    return result


# --- the command ---------------------------------------------------------------------------------------


def run_export(
    settings: DatabaseSettings, out: Path, jurisdictions: Sequence[str] | None = None, *, show_progress: bool
) -> ExportResult:
    schema = os.environ.get("REFINERY_SCHEMA", "refiner")
    plan = read_plan(settings, schema, jurisdictions)
    if not show_progress:
        return export(plan, out)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = 2 * len(plan.payloads) + len(plan.jurisdictions) + len(plan.pointers)
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("export", total=total)
        return export(plan, out, on_file=lambda _path, _changed: progress.advance(task))


def run(args: argparse.Namespace) -> int:
    settings = connection.resolve()
    out = Path(args.out)
    result = run_export(settings, out, args.jurisdiction, show_progress=sys.stderr.isatty())
    print(result.describe(out))
    return 0
