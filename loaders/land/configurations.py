"""`refinery load configurations FILE`: make `raw.configurations` equal a full snapshot.

Configurations are authored in the Refiner application; the file (a JSON list of objects, or a
CSV with a header row) is a complete snapshot: configurations missing from the file disappear
downstream. Every record is validated first; one bad record refuses the whole file.

The load writes only what changed (docs/loading.md#configurations-contract): the snapshot is
COPYed into a temporary table, then three set-based statements in the load's one transaction
delete the ids the file lacks, update the rows whose content differs (by id) and insert the new
ids. Rows that did not change are not written: they keep their load_id and updated_at. A row
written by this load carries its load_id; updated_at, when the file gives none, is the load time
of the load that last changed the row. The load record counts inserted, updated and deleted rows:
all three 0 means the snapshot changed nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from loaders.errors import InvalidInputError
from loaders.land import lock as load_lock
from loaders.land.loads import Counts, LoadResult, Progress, Target, run_load
from loaders.land.reader import FileInfo

KIND = "configurations"
CODE_FIELDS = ("loinc_codes", "snomed_codes", "icd10_codes", "rxnorm_codes")
# The short keys an exclusion may name (`loinc|94500-6`): the short_name column of
# seeds/code_systems.csv (tests/test_codes.py keeps the two equal). A system given as a URL
# (`http://loinc.org|94500-6`, anything with a `:`) needs no entry here.
SYSTEM_KEYS = frozenset(
    ("snomed", "loinc", "icd10", "rxnorm", "cvx", "cpt", "icd9", "icd10_who", "hcpcs", "ndc", "ucum")
)
REQUIRED = ("id", "jurisdiction_id", "child_grouper_url", "child_grouper_version")
COLUMNS = (
    "id",
    "jurisdiction_id",
    "child_grouper_url",
    "child_grouper_version",
    "display_name_override",
    "version",
    *CODE_FIELDS,
    "excluded_codes",
    "is_active",
    "created_by",
    "created_at",
    "updated_at",
)
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}


@dataclass(frozen=True)
class Configuration:
    id: int
    jurisdiction_id: str
    child_grouper_url: str
    child_grouper_version: str
    display_name_override: str | None
    version: int
    loinc_codes: list[str]
    snomed_codes: list[str]
    icd10_codes: list[str]
    rxnorm_codes: list[str]
    excluded_codes: list[str]
    is_active: bool
    created_by: str | None
    created_at: datetime | None
    updated_at: datetime | None  # None: the load time

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)


class _Bad(ValueError):
    """A field with the wrong type or value (message names the field)."""


# --- field parsers: JSON values are typed; CSV cells are text --------------------------------


def _text(name: str, value: Any, *, required: bool, from_csv: bool) -> str | None:
    if value is None or (from_csv and value == ""):
        if required:
            raise _Bad(f"missing {name}")
        return None
    if not isinstance(value, str):
        raise _Bad(f"{name} must be a string, got {_kind(value)}")
    if required and not value.strip():
        raise _Bad(f"missing {name}")
    return value


def _integer(name: str, value: Any, *, default: int | None, from_csv: bool) -> int:
    if value is None or (from_csv and value.strip() == ""):
        if default is None:
            raise _Bad(f"missing {name}")
        return default
    if from_csv:
        try:
            return int(value.strip())
        except ValueError as exc:
            raise _Bad(f"{name} must be an integer, got {value!r}") from exc
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{name} must be an integer, got {_kind(value)}")
    return value


def _in_range(name: str, value: int, bits: int) -> int:
    limit = 2 ** (bits - 1)
    if not -limit <= value < limit:
        raise _Bad(f"{name} {value} does not fit in a {bits}-bit integer")
    return value


def _boolean(name: str, value: Any, *, from_csv: bool) -> bool:
    if value is None or (from_csv and value.strip() == ""):
        return False
    if from_csv:
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise _Bad(f"{name} must be true or false, got {value!r}")
    if not isinstance(value, bool):
        raise _Bad(f"{name} must be true or false, got {_kind(value)}")
    return value


def _codes(name: str, value: Any, *, from_csv: bool) -> list[str]:
    if value is None:
        return []
    if from_csv:
        cell = value.strip()
        if not cell:
            return []
        if cell.startswith("["):
            try:
                value = json.loads(cell)
            except json.JSONDecodeError as exc:
                raise _Bad(f"{name} is not a JSON array: {exc.msg}") from exc
        else:
            return [code.strip() for code in cell.split(";") if code.strip()]
    if not isinstance(value, list):
        raise _Bad(f"{name} must be a list of strings, got {_kind(value)}")
    for position, code in enumerate(value):
        if not isinstance(code, str) or not code.strip():
            raise _Bad(f"{name}[{position}] must be a non-empty string, got {_kind(code)}")
    return list(value)


def _exclusions(value: Any, *, from_csv: bool) -> list[str]:
    """excluded_codes: a list like the added codes, each entry a bare code or `system|code`
    (system: a short key of SYSTEM_KEYS or a system URL); entries are kept as given, trimmed."""
    name = "excluded_codes"
    if from_csv and isinstance(value, str) and value.strip() and not value.strip().startswith("["):
        entries: list[Any] = [entry.strip() for entry in value.split(";") if entry.strip()]
    elif from_csv:
        entries = _codes(name, value, from_csv=True)
    else:
        if value is not None and not isinstance(value, list):
            raise _Bad(f"{name} must be a list of strings, got {_kind(value)}")
        entries = list(value or [])
    cleaned: list[str] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, str):
            raise _Bad(f"{name}[{position}] must be a string, got {_kind(entry)}")
        entry = entry.strip()
        if not entry:
            raise _Bad(f"{name}[{position}] is empty")
        if "|" in entry:
            system, _, code = entry.partition("|")
            system, code = system.strip(), code.strip()
            if not system or not code:
                raise _Bad(f"{name}[{position}] {entry!r}: `system|code` needs both parts")
            if "|" in code:
                raise _Bad(f"{name}[{position}] {entry!r}: more than one `|`")
            if ":" not in system and system not in SYSTEM_KEYS:
                raise _Bad(
                    f"{name}[{position}] {entry!r}: unknown system key {system!r} "
                    f"(known: {', '.join(sorted(SYSTEM_KEYS))}; or give the system URL)"
                )
            entry = f"{system}|{code}"
        cleaned.append(entry)
    return cleaned


def _timestamp(name: str, value: Any, *, from_csv: bool) -> datetime | None:
    if value is None or (from_csv and value.strip() == ""):
        return None
    if not isinstance(value, str):
        raise _Bad(f"{name} must be an ISO 8601 timestamp string, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise _Bad(f"{name} is not an ISO 8601 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise _Bad(f"{name} needs a time zone (e.g. {value.strip()}Z): {value!r}")
    return parsed


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def parse_record(record: Any, *, from_csv: bool) -> Configuration:
    """One configuration from a JSON object or a CSV row; raises _Bad naming the field."""
    if not isinstance(record, dict):
        raise _Bad(f"not an object (a JSON {type(record).__name__})")
    unknown = sorted(set(record) - set(COLUMNS))
    if unknown:
        raise _Bad(f"unknown field(s) {', '.join(map(str, unknown))} (expected: {', '.join(COLUMNS)})")
    for name, value in record.items():
        if _holds_nul(value):
            raise _Bad(f"{name} contains a NUL character, which PostgreSQL cannot store")
    get = record.get
    return Configuration(
        id=_in_range("id", _integer("id", get("id"), default=None, from_csv=from_csv), 64),
        jurisdiction_id=_text("jurisdiction_id", get("jurisdiction_id"), required=True, from_csv=from_csv),
        child_grouper_url=_text(
            "child_grouper_url", get("child_grouper_url"), required=True, from_csv=from_csv
        ),
        child_grouper_version=_text(
            "child_grouper_version", get("child_grouper_version"), required=True, from_csv=from_csv
        ),
        display_name_override=_text(
            "display_name_override", get("display_name_override"), required=False, from_csv=from_csv
        ),
        version=_in_range("version", _integer("version", get("version"), default=1, from_csv=from_csv), 32),
        loinc_codes=_codes("loinc_codes", get("loinc_codes"), from_csv=from_csv),
        snomed_codes=_codes("snomed_codes", get("snomed_codes"), from_csv=from_csv),
        icd10_codes=_codes("icd10_codes", get("icd10_codes"), from_csv=from_csv),
        rxnorm_codes=_codes("rxnorm_codes", get("rxnorm_codes"), from_csv=from_csv),
        excluded_codes=_exclusions(get("excluded_codes"), from_csv=from_csv),
        is_active=_boolean("is_active", get("is_active"), from_csv=from_csv),
        created_by=_text("created_by", get("created_by"), required=False, from_csv=from_csv),
        created_at=_timestamp("created_at", get("created_at"), from_csv=from_csv),
        updated_at=_timestamp("updated_at", get("updated_at"), from_csv=from_csv),
    )


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


# --- files ---------------------------------------------------------------------------------------


def _records(path: Path, data: bytes) -> tuple[list[Any], bool]:
    """The raw records of a JSON or CSV snapshot, and whether they came from CSV."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInputError(f"{path}: CSV header lacks column(s) {', '.join(missing)}")
        rows: list[Any] = []
        for row in reader:
            if None in row:
                raise InvalidInputError(
                    f"{path}: record {len(rows)} (line {reader.line_num}): more cells than header columns"
                )
            rows.append(row)
        return rows, True
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError as exc:
        raise InvalidInputError(f"{path}: unreadable JSON: nested too deeply to be configurations") from exc
    if not isinstance(document, list):
        raise InvalidInputError(f"{path}: expected a JSON list of configurations, got {_kind(document)}")
    return document, False


def read_snapshot(path: Path) -> tuple[list[Configuration], FileInfo]:
    """Parse and validate a whole snapshot; InvalidInputError names the file, record and id."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read file: {exc.strerror or exc}") from exc
    records, from_csv = _records(path, data)
    configurations: list[Configuration] = []
    first_index: dict[int, int] = {}
    for index, record in enumerate(records):
        try:
            configuration = parse_record(record, from_csv=from_csv)
        except _Bad as exc:
            raise InvalidInputError(f"{path}: record {index}{_id_of(record)}: {exc}") from None
        if configuration.id in first_index:
            raise InvalidInputError(
                f"{path}: record {index} (id {configuration.id}): duplicate id, "
                f"also record {first_index[configuration.id]}"
            )
        first_index[configuration.id] = index
        configurations.append(configuration)
    info = FileInfo(str(path), hashlib.sha256(data).hexdigest(), len(data), len(configurations))
    return configurations, info


def _id_of(record: Any) -> str:
    if isinstance(record, dict) and record.get("id") not in (None, ""):
        return f" (id {str(record['id'])[:40]})"
    return ""


# --- loading -------------------------------------------------------------------------------------


COLUMN_TYPES = {
    "id": "int8",
    "jurisdiction_id": "text",
    "child_grouper_url": "text",
    "child_grouper_version": "text",
    "display_name_override": "text",
    "version": "int4",
    **{name: "text[]" for name in CODE_FIELDS},
    "excluded_codes": "text[]",
    "is_active": "bool",
    "created_by": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
INCOMING = "pg_temp.incoming_configurations"


def _diff_statements() -> tuple[str, str, str]:
    """delete / update / insert of raw.configurations from the incoming snapshot, by id.

    A row differs when any column differs (`is distinct from`: nulls compare equal), updated_at
    only when the file gives one: a file without updated_at does not make every row "changed"
    (the stored value, the load time of the row's last change, stays).
    Parameters: %(load_id)s, %(loaded_at)s.
    """
    compared = [name for name in COLUMNS if name not in ("id", "updated_at")]
    stored = ", ".join(f"stored.{name}" for name in compared)
    incoming = ", ".join(f"incoming.{name}" for name in compared)
    delete = f"""
        delete from raw.configurations as stored
        where not exists (select 1 from {INCOMING} as incoming where incoming.id = stored.id)
    """
    assignments = ", ".join(f"{name} = incoming.{name}" for name in compared)
    update = f"""
        update raw.configurations as stored
        set {assignments},
            updated_at = coalesce(incoming.updated_at, %(loaded_at)s),
            load_id = %(load_id)s
        from {INCOMING} as incoming
        where
            incoming.id = stored.id
            and (
                ({stored}) is distinct from ({incoming})
                or (incoming.updated_at is not null and incoming.updated_at <> stored.updated_at)
            )
    """
    columns = ", ".join(COLUMNS)
    values = ", ".join(
        "coalesce(incoming.updated_at, %(loaded_at)s)" if name == "updated_at" else f"incoming.{name}"
        for name in COLUMNS
    )
    insert = f"""
        insert into raw.configurations ({columns}, load_id)
        select {values}, %(load_id)s
        from {INCOMING} as incoming
        where not exists (select 1 from raw.configurations as stored where stored.id = incoming.id)
    """
    return delete, update, insert


def _copy_incoming(conn: psycopg.Connection, configurations: list[Configuration]) -> None:
    """The snapshot into a temporary table (dropped at commit or rollback; not WAL-logged)."""
    definitions = ", ".join(f"{name} {COLUMN_TYPES[name]}" for name in COLUMNS)
    conn.execute(f"create temporary table incoming_configurations ({definitions}) on commit drop")
    with conn.cursor() as cur, cur.copy(f"copy {INCOMING} ({', '.join(COLUMNS)}) from stdin") as copy:
        copy.set_types([COLUMN_TYPES[name] for name in COLUMNS])
        for configuration in configurations:
            copy.write_row(configuration.row())
    conn.execute(f"alter table {INCOMING} add primary key (id)")  # ids are unique (validated)
    conn.execute(f"analyze {INCOMING}")


def _body(path: Path) -> Callable[[psycopg.Connection, int, Progress], Counts]:
    def body(conn: psycopg.Connection, load_id: int, progress: Progress) -> Counts:
        with progress.phase("read"):
            configurations, info = read_snapshot(path)
        progress.files.append(info)
        with progress.phase("copy"):
            _copy_incoming(conn, configurations)
        params = {"load_id": load_id, "loaded_at": conn.execute("select now()").fetchone()[0]}
        delete, update, insert = _diff_statements()
        with progress.phase("write"):
            deleted = conn.execute(delete).rowcount
            updated = conn.execute(update, params).rowcount
            inserted = conn.execute(insert, params).rowcount
            conn.execute(f"drop table {INCOMING}")
        return Counts(
            inserted=inserted,
            updated=updated,
            unchanged=len(configurations) - inserted - updated,
            deleted=deleted,
        )

    return body


def load_configurations(
    file: Path | str,
    target: Target,
    *,
    lock_timeout: float = 30.0,
    held_lock: load_lock.DatabaseLock | None = None,
) -> LoadResult:
    """Make raw.configurations equal the snapshot in `file` as one load, writing only what changed.

    Counts: inserted = ids new to the table, updated = ids whose row changed, unchanged = ids
    whose row was left as it was, deleted = ids no longer in the snapshot.
    """
    return run_load(target, kind=KIND, body=_body(Path(file)), lock_timeout=lock_timeout, held_lock=held_lock)
