"""Read TES JSON files one at a time and turn each ValueSet into a row ready for COPY.

Accepted documents: the fetch output `{"metadata": ..., "valuesets": [...]}` (also its
`.partNN.json` pieces), a FHIR searchset Bundle (`entry[].resource`), a JSON list of ValueSets, or
one ValueSet. Folders are searched recursively for `*.json`; `manifest.json` and hidden folders are
skipped.

Each record is validated and hashed from the parsed dict: `resource_sha256` is the sha256 of the
canonical JSON (sorted keys, no whitespace, UTF-8), which is also the text sent to PostgreSQL.
Only one file is held in memory at a time, and each record is released once it is serialised.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import msgspec

from loaders.errors import InvalidInputError

MANIFEST_NAME = "manifest.json"
_CODE = itemgetter("code")
_STR_LENGTH = str.__len__


@dataclass(frozen=True)
class FileInfo:
    """What `raw.loads.files` records for one input file."""

    path: str
    sha256: str
    bytes: int
    records: int

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes, "records": self.records}


@dataclass(frozen=True)
class ValueSetRow:
    """One valid ValueSet: its key, hash and canonical JSON text."""

    index: int
    canonical_url: str
    version: str
    sha256: str
    data: bytes  # canonical JSON, UTF-8


@dataclass(frozen=True)
class Rejection:
    """A record (index set) or a whole file (index None) that cannot be loaded."""

    source_file: str
    index: int | None
    key: str | None
    reason: str
    record: str | None = None

    @property
    def message(self) -> str:
        where = self.source_file
        if self.index is not None:
            where += f": record {self.index}"
            if self.key:
                where += f" ({self.key})"
        return f"{where}: {self.reason}"

    def error(self) -> InvalidInputError:
        return InvalidInputError(
            f"{self.message} — nothing was loaded (--skip-invalid loads the valid records)"
        )


class FileRejected(Exception):
    """A whole file cannot be read as TES data."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


# --- finding files -----------------------------------------------------------------------------


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files to load, in a stable order: files as given, folders' `*.json` recursively."""
    found: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(
                child
                for child in path.rglob("*.json")
                if child.is_file()
                and child.name != MANIFEST_NAME
                and not any(part.startswith(".") for part in child.relative_to(path).parts)
            )
            if not inside:
                raise InvalidInputError(f"{path}: folder holds no *.json files to load")
            candidates = inside
        elif path.is_file():
            if path.name == MANIFEST_NAME:
                continue
            candidates = [path]
        else:
            raise InvalidInputError(f"{path}: no such file or folder")
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(candidate)
    return found


# --- canonical JSON and checks -----------------------------------------------------------------


def canonical_json(record: Any) -> str:
    """The text hashed and stored: sorted keys, no whitespace, non-ASCII kept as is."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_ENCODER = msgspec.json.Encoder(order="sorted")


def canonical_bytes(record: Any, *, has_floats: bool = True) -> bytes:
    """`canonical_json(record).encode()`, fast: msgspec gives the same bytes unless floats occur.

    msgspec may write a float differently from Python's `repr`, so documents with floats (and
    anything msgspec refuses, such as an unpaired surrogate) use the json module. Kept because it
    is measured: ~5x the json module's encoder, ~20% of a production-scale load's wall clock
    (bench/results/loader.md).
    """
    if not has_floats:
        try:
            return _ENCODER.encode(record)
        except (msgspec.EncodeError, UnicodeEncodeError, TypeError, ValueError):
            pass
    return canonical_json(record).encode()


def content_sha256(record: Any) -> str:
    """The `resource_sha256` of a record: sha256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(record).encode()).hexdigest()


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def _contains_infinity(value: Any) -> bool:
    """A float literal too large for a double (parsed as inf) anywhere in the record."""
    if isinstance(value, float):
        return math.isinf(value)
    if isinstance(value, dict):
        return any(_contains_infinity(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_infinity(item) for item in value)
    return False


def _codes_ok(concepts: list[Any]) -> bool:
    """Fast path (C-level loops): every concept is an object with a non-empty string code
    (`str.__len__` refuses anything but a str, and an empty one is falsy)."""
    try:
        return all(map(_STR_LENGTH, map(_CODE, concepts)))
    except (TypeError, KeyError):
        return False


def _compose_problem(compose: Any) -> str | None:
    if not isinstance(compose, dict):
        return "compose is not an object"
    for part in ("include", "exclude"):
        if part not in compose:
            continue
        entries = compose[part]
        if not isinstance(entries, list):
            return f"compose.{part} is not a list"
        for number, entry in enumerate(entries):
            where = f"compose.{part}[{number}]"
            if not isinstance(entry, dict):
                return f"{where} is not an object"
            if "system" in entry and not isinstance(entry["system"], str):
                return f"{where}.system is not a string"
            if "valueSet" in entry and (
                not isinstance(entry["valueSet"], list)
                or not all(isinstance(ref, str) for ref in entry["valueSet"])
            ):
                return f"{where}.valueSet is not a list of strings"
            if "concept" not in entry:
                continue
            concepts = entry["concept"]
            if not isinstance(concepts, list):
                return f"{where}.concept is not a list"
            if _codes_ok(concepts):
                continue
            for position, concept in enumerate(concepts):
                if not isinstance(concept, dict):
                    return f"{where}.concept[{position}] is not an object"
                code = concept.get("code")
                if not isinstance(code, str) or not code:
                    return f"{where}.concept[{position}].code is not a non-empty string"
    return None


def _key(record: dict[str, Any]) -> str | None:
    url, version = record.get("url"), record.get("version")
    if url is None and version is None:
        return None
    return _printable(f"{url if url is not None else '?'}|{version if version is not None else '?'}")


def _printable(text: str, limit: int = 300) -> str:
    """Safe for a one-line message: NUL spelled out, very long keys shortened."""
    text = text.replace("\x00", "\\u0000")
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}"


# raw.tes_valuesets indexes (canonical_url, version): a btree entry holds at most ~2.7 KB.
MAX_KEY_CHARACTERS = 2000


def check_valueset(record: Any) -> str | None:
    """Why this record cannot be loaded, or None when it can (NUL is checked on the text)."""
    if not isinstance(record, dict):
        return f"not a ValueSet (a JSON {type(record).__name__})"
    kind = record.get("resourceType")
    if kind != "ValueSet":
        if not kind:
            return "not a ValueSet (no resourceType)"
        return f"not a ValueSet (resourceType {_printable(str(kind))!r})"
    url = record.get("url")
    if not isinstance(url, str) or not url.strip():
        return "ValueSet has no url"
    version = record.get("version")
    if not isinstance(version, str) or not version.strip():
        return "ValueSet has no version"
    if len(url) + len(version) > MAX_KEY_CHARACTERS:
        return f"ValueSet url|version is longer than {MAX_KEY_CHARACTERS} characters"
    if "compose" in record:
        return _compose_problem(record["compose"])
    return None


# --- documents ---------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (PostgreSQL jsonb cannot store it)")


class _FloatSpy:
    """`parse_float` hook that notes whether a document holds any float literal."""

    def __init__(self) -> None:
        self.seen = False
        self.out_of_range = False

    def __call__(self, literal: str) -> float:
        self.seen = True
        value = float(literal)
        if math.isinf(value):
            self.out_of_range = True
        return value


def _parse_document(data: bytes, source: str, spy: _FloatSpy) -> Any:
    """The whole file parsed by the json module; FileRejected (with the reason) when it cannot be."""
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=spy)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(data.rstrip()) or exc.msg.startswith("Unterminated string")
        what = "truncated JSON" if truncated else "invalid JSON"
        reason = f"{what} at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise FileRejected(Rejection(source, None, None, reason)) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise FileRejected(Rejection(source, None, None, f"unreadable JSON: {exc}")) from exc
    except RecursionError as exc:
        reason = "unreadable JSON: nested too deeply to be TES data"
        raise FileRejected(Rejection(source, None, None, reason)) from exc


class _FetchDocument(msgspec.Struct):
    """The fetch output's shape, its records left as raw JSON text (other keys skipped)."""

    valuesets: list[msgspec.Raw]


# Splitting a file into its records' raw JSON checks the whole file's syntax (not its strings'
# UTF-8, nor numbers' range) without building a Python object per JSON value.
_SPLIT_OBJECT = msgspec.json.Decoder(_FetchDocument)
_SPLIT_LIST = msgspec.json.Decoder(list[msgspec.Raw])


def _skeleton(data: bytes, records: list[msgspec.Raw]) -> bytes | None:
    """`data` with each record's text replaced by `0` (None if a record is not found in order)."""
    parts = []
    position = 0
    for raw in records:
        text = bytes(raw)
        head = text[:64]
        start = data.find(head, position)
        while start >= 0 and not data.startswith(text, start):
            start = data.find(head, start + 1)
        if start < 0:
            return None
        parts.append(data[position:start])
        position = start + len(text)
    parts.append(data[position:])
    return b"0".join(parts)


def _split(data: bytes) -> list[msgspec.Raw] | None:
    """The records of a fetch-format file or a JSON list, as raw JSON; None for anything else
    (another shape, invalid JSON, a BOM, deep nesting...), which the json module reads whole.

    json.loads accepts the file exactly when it accepts its skeleton (the file, each record
    replaced by `0`) and every record: the skeleton is checked here (metadata, separators,
    overwritten duplicate keys), each record when `TesFile` parses it.
    """
    start = data[:64].lstrip()[:1]
    try:
        if start == b"{":
            records = _SPLIT_OBJECT.decode(data).valuesets
        elif start == b"[":
            records = _SPLIT_LIST.decode(data)
        else:
            return None
    except (msgspec.MsgspecError, RecursionError):
        return None
    skeleton = _skeleton(data, records)
    if skeleton is None:
        return None
    try:
        json.loads(skeleton, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return records


def _records_of(document: Any, source: str) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        if "valuesets" in document:
            records = document["valuesets"]
            if not isinstance(records, list):
                raise FileRejected(Rejection(source, None, None, "not TES data: `valuesets` is not a list"))
            return records
        kind = document.get("resourceType")
        if kind == "ValueSet":
            return [document]
        if kind == "Bundle":
            entries = document.get("entry", [])
            if not isinstance(entries, list):
                raise FileRejected(Rejection(source, None, None, "not TES data: Bundle.entry is not a list"))
            return [
                entry.get("resource") if isinstance(entry, dict) else entry
                for entry in entries
                if not (isinstance(entry, dict) and (entry.get("search") or {}).get("mode") == "outcome")
            ]
    raise FileRejected(
        Rejection(
            source,
            None,
            None,
            'not TES data: expected a ValueSet, a list of ValueSets, a FHIR Bundle or {"valuesets": [...]}',
        )
    )


class TesFile:
    """One input file: its FileInfo and its records, each yielded once.

    Fetch-format files and JSON lists (what `refinery fetch` writes) are split into their records'
    raw JSON and each record is parsed (msgspec) only when its turn comes,
    so rows reach the server while later records are still being read. A problem json.loads would
    find in such a file only past its syntax (a 5,000-digit integer, say) surfaces as FileRejected
    from `items()`; `refusal()` tells which problem the json module would report first.
    """

    def __init__(self, path: Path) -> None:
        self.source = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = f"cannot read file: {exc.strerror or exc}"
            raise FileRejected(Rejection(self.source, None, None, reason)) from exc
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.size = len(data)
        self._spy = _FloatSpy()
        self._decoder = msgspec.json.Decoder(float_hook=self._spy)
        raw = _split(data)
        self._data: bytes | None = data if raw is not None else None
        if raw is not None:
            self._records: list[Any] = raw
        else:
            document = _parse_document(data, self.source, self._spy)
            del data
            self._records = _records_of(document, self.source)
        self._lazy = raw is not None
        self.count = len(self._records)

    @property
    def info(self) -> FileInfo:
        return FileInfo(self.source, self.sha256, self.size, self.count)

    def items(self) -> Iterator[ValueSetRow | Rejection]:
        """Rows and rejections in file order; each record is dropped once handled."""
        records = self._records
        for index in range(len(records)):
            record = records[index]
            records[index] = None
            if self._lazy:
                record = self._decode(record)
            try:
                row = self._row(index, record)
            except RecursionError as exc:  # parsed, yet too deep to check or write back
                reason = "unreadable JSON: nested too deeply to be TES data"
                raise FileRejected(self.refusal(Rejection(self.source, None, None, reason))) from exc
            yield row
        records.clear()
        self._data = None

    def refusal(self, rejection: Rejection) -> Rejection:
        """What refuses this file when `rejection` is the first problem met while streaming it: a
        file the json module cannot read is refused as a whole, as when it was parsed at once."""
        if self._data is None:
            return rejection
        try:
            _parse_document(self._data, self.source, _FloatSpy())
        except FileRejected as exc:
            return exc.rejection
        return rejection

    def _decode(self, raw: msgspec.Raw) -> Any:
        """One record's value; the json module decides what msgspec refuses (lone surrogates,
        numbers out of a double's range, huge integers...)."""
        spy = self._spy
        spy.seen = spy.out_of_range = False
        try:
            return self._decoder.decode(raw)
        except (msgspec.MsgspecError, ValueError, RecursionError):
            pass
        spy.seen = spy.out_of_range = False
        try:
            return json.loads(bytes(raw), parse_constant=_reject_constant, parse_float=spy)
        except (ValueError, RecursionError) as exc:
            rejection = self.refusal(Rejection(self.source, None, None, f"unreadable JSON: {exc}"))
            raise FileRejected(rejection) from exc

    def _row(self, index: int, record: Any) -> ValueSetRow | Rejection:
        problem = check_valueset(record)
        if problem is not None:
            key = _key(record) if isinstance(record, dict) else None
            return Rejection(self.source, index, key, problem, _record_text(record))
        if self._spy.out_of_range and _contains_infinity(record):
            return Rejection(
                self.source,
                index,
                _key(record),
                "holds a number out of range (PostgreSQL jsonb cannot store it)",
                _record_text(record),
            )
        try:
            data = canonical_bytes(record, has_floats=self._spy.seen)
        except UnicodeEncodeError:
            return Rejection(
                self.source,
                index,
                _key(record),
                "contains an unpaired UTF-16 surrogate",
                _record_text(record),
            )
        # most records hold no backslash at all: one memchr instead of a substring search
        if b"\\" in data and b"\\u0000" in data and _contains_nul(record):
            return Rejection(
                self.source,
                index,
                _key(record),
                "contains a NUL character (\\u0000), which PostgreSQL cannot store",
                _record_text(record),
            )
        return ValueSetRow(index, record["url"], record["version"], hashlib.sha256(data).hexdigest(), data)


def _record_text(record: Any) -> str:
    """The record as ASCII JSON for raw.rejected_records (escapes NUL and surrogates)."""
    return json.dumps(record, ensure_ascii=True, default=str)
