"""A table-driven corpus of bad (and odd-but-valid) inputs for `refinery load tes|configurations`.

Every case runs the real CLI (`python -m refinery.cli load ...`) in a subprocess against one
database per module that already holds good TES data and configurations. A refused input must:

- exit with the documented code (3 = invalid input, docs/operations.md "Exit codes");
- print exactly one line on stderr, `error: <file>: record <n> (<url|version>): <reason> ...`,
  naming the file (and the record for record-level problems), with no traceback, no raw control
  characters and no rich markup swallowed;
- leave every raw table byte-for-byte unchanged (md5 of all rows), except for at most one
  `raw.loads` row with status 'failed' whose error names the same file.

Decisions documented here (and in docs/reliability.md):

- A 200,000-code ValueSet is valid FHIR: it loads (and reloads as unchanged).
- Unknown code systems, references without a `|version`, control characters other than NUL,
  very long titles, a UTF-8 BOM and hostile strings are data: they load as received.
- Strings PostgreSQL cannot index (an incompressible url|version of several KB), numbers beyond
  what JSON/jsonb or the column type hold, and absurdly deep nesting must be refused clearly
  like any other bad record (a case may carry `known_defect` to mark an open defect as
  `xfail(strict=True)`; none does today).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loaders.land.configurations import load_configurations
from loaders.land.tes import load_tes
from refinery.connection import DatabaseSettings
from tests.reliability._helpers import (
    TES,
    error_lines,
    loads,
    query,
    refinery,
    table_hashes,
    valueset,
    write_json,
)

Make = Callable[[Path], list[Path]]


@dataclass(frozen=True)
class Bad:
    """A refused input: what the one error line must say."""

    kind: str  # "tes" or "configurations"
    make: Make  # writes the input under a folder, returns the CLI arguments (files)
    reason: str  # substring of the message
    record: int | None = None  # the record index the message must name
    names: tuple[int, ...] = (0,)  # which returned paths the message must name
    known_defect: str | None = None  # open defect in another module: xfail(strict=True)
    exit_code: int = 3


def _fetch(records: list[Any]) -> dict[str, Any]:
    return {"metadata": {"category": "reporting_spec_grouper_1"}, "valuesets": records}


def _text(name: str, content: str | bytes) -> Make:
    def make(folder: Path) -> list[Path]:
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return [path]

    return make


def _second(record: Any, name: str = "bad.json") -> Make:
    """A fetch-format file whose record 0 is fine and record 1 is `record`."""

    def make(folder: Path) -> list[Path]:
        return [write_json(folder / name, _fetch([valueset("fine-0"), record]))]

    return make


def _raw_second(record_json: str, name: str = "bad.json") -> Make:
    """Like `_second` for records that json.dumps cannot write (NaN, surrogates...)."""
    fine = json.dumps(valueset("fine-0"))
    return _text(name, '{"metadata": {}, "valuesets": [' + fine + ", " + record_json + "]}")


def _edit(change: Callable[[dict[str, Any]], None], name: str = "edited") -> dict[str, Any]:
    record = valueset(name)
    change(record)
    return record


def _without(key: str) -> dict[str, Any]:
    return _edit(lambda record: record.pop(key), f"no-{key}")


def _include(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    return _edit(lambda record: change(record["compose"]["include"][0]))


def _concepts(value: Any) -> dict[str, Any]:
    return _include(lambda include: include.update(concept=value))


def _two_files(folder: Path) -> list[Path]:
    one = write_json(folder / "one.json", [valueset("dup", codes=["1"])])
    two = write_json(folder / "two.json", _fetch([valueset("other"), valueset("dup", codes=["2"])]))
    return [one, two]


def _missing(folder: Path) -> list[Path]:
    return [folder / "does-not-exist.json"]


def _empty_folder(folder: Path) -> list[Path]:
    empty = folder / "empty-folder"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no json here")
    return [empty]


def _markup_file_name(folder: Path) -> list[Path]:
    return [write_json(folder / "bad [red]x[/red] [/].json", [_without("version")])]


TES_CASES: dict[str, Bad] = {
    # unreadable files
    "truncated fetch file": Bad(
        "tes", _text("t.json", json.dumps(_fetch([valueset("a")]))[:-40]), "JSON at line 1"
    ),
    "empty file": Bad("tes", _text("empty.json", ""), "truncated JSON"),
    "whitespace only": Bad("tes", _text("blank.json", " \n\t\n"), "truncated JSON"),
    "binary (PNG header)": Bad(
        "tes", _text("image.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "unreadable JSON"
    ),
    "latin-1 bytes in a string": Bad(
        "tes", _text("latin1.json", b'[{"title": "caf\xe9"}]'), "unreadable JSON"
    ),
    "trailing comma": Bad("tes", _text("comma.json", '[{"resourceType": "ValueSet"},]'), "invalid JSON"),
    "NaN literal": Bad(
        "tes", _raw_second('{"resourceType": "ValueSet", "url": "u", "version": "1", "x": NaN}'), "NaN"
    ),
    "Infinity literal": Bad(
        "tes",
        _raw_second('{"resourceType": "ValueSet", "url": "u", "version": "1", "x": -Infinity}'),
        "Infinity",
    ),
    "5,000-digit integer": Bad(
        "tes",
        _raw_second('{"resourceType": "ValueSet", "url": "u", "version": "1", "x": ' + "9" * 5000 + "}"),
        "unreadable JSON",
    ),
    # documents that are not TES data
    "a JSON number": Bad("tes", _text("number.json", "42"), "not TES data"),
    "a foreign object": Bad("tes", _text("foreign.json", '{"hello": "world"}'), "not TES data"),
    "valuesets not a list": Bad("tes", _text("vs.json", '{"valuesets": {"a": 1}}'), "not a list"),
    "Bundle.entry not a list": Bad(
        "tes",
        _text("bundle.json", '{"resourceType": "Bundle", "entry": {"x": 1}}'),
        "Bundle.entry is not a list",
    ),
    "no such file": Bad("tes", _missing, "no such file or folder"),
    "folder without json": Bad("tes", _empty_folder, "holds no *.json"),
    # wrong resource types and shapes
    "Patient among ValueSets": Bad(
        "tes",
        _second({"resourceType": "Patient", "id": "p"}),
        "not a ValueSet (resourceType 'Patient')",
        record=1,
    ),
    "CodeSystem in a Bundle": Bad(
        "tes",
        lambda folder: [
            write_json(
                folder / "bundle.json",
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": [
                        {"resource": valueset("fine")},
                        {"resource": {"resourceType": "CodeSystem", "url": "u", "version": "1"}},
                    ],
                },
            )
        ],
        "not a ValueSet (resourceType 'CodeSystem')",
        record=1,
    ),
    "null record": Bad("tes", _second(None), "not a ValueSet", record=1),
    "string record": Bad("tes", _second("ValueSet"), "not a ValueSet", record=1),
    "list record": Bad("tes", _second([valueset("nested")]), "not a ValueSet", record=1),
    "no resourceType": Bad("tes", _second(_without("resourceType")), "no resourceType", record=1),
    # missing keys and wrong types
    "no url": Bad("tes", _second(_without("url")), "has no url", record=1),
    "no version": Bad("tes", _second(_without("version")), "has no version", record=1),
    "url a number": Bad("tes", _second(_edit(lambda r: r.update(url=42))), "has no url", record=1),
    "version a number": Bad(
        "tes", _second(_edit(lambda r: r.update(version=1.0))), "has no version", record=1
    ),
    "blank url": Bad("tes", _second(_edit(lambda r: r.update(url="   "))), "has no url", record=1),
    "compose a list": Bad(
        "tes", _second(_edit(lambda r: r.update(compose=[]))), "compose is not an object", record=1
    ),
    "include not a list": Bad(
        "tes",
        _second(_edit(lambda r: r["compose"].update(include={}))),
        "compose.include is not a list",
        record=1,
    ),
    "exclude not a list": Bad(
        "tes",
        _second(_edit(lambda r: r["compose"].update(exclude="x"))),
        "compose.exclude is not a list",
        record=1,
    ),
    "include entry a string": Bad(
        "tes",
        _second(_edit(lambda r: r["compose"].update(include=["x"]))),
        "compose.include[0] is not an object",
        record=1,
    ),
    "system a number": Bad(
        "tes", _second(_include(lambda i: i.update(system=96))), "system is not a string", record=1
    ),
    "valueSet refs not strings": Bad(
        "tes",
        _second(_include(lambda i: i.update(valueSet=[1]))),
        "valueSet is not a list of strings",
        record=1,
    ),
    "concept not a list": Bad("tes", _second(_concepts({"code": "1"})), "concept is not a list", record=1),
    "concept entry a string": Bad("tes", _second(_concepts(["1"])), "concept[0] is not an object", record=1),
    "code a number": Bad(
        "tes", _second(_concepts([{"code": 840539006}])), "code is not a non-empty string", record=1
    ),
    "code empty": Bad("tes", _second(_concepts([{"code": ""}])), "code is not a non-empty string", record=1),
    "code missing": Bad(
        "tes", _second(_concepts([{"display": "no code"}])), "code is not a non-empty string", record=1
    ),
    # characters PostgreSQL cannot store
    "NUL in a title": Bad("tes", _second(_edit(lambda r: r.update(title="a\u0000b"))), "NUL", record=1),
    "NUL in a code": Bad("tes", _second(_concepts([{"code": "12\u00003"}])), "NUL", record=1),
    "NUL in a key": Bad("tes", _second(_edit(lambda r: r.update({"ext\u0000": 1}))), "NUL", record=1),
    "lone surrogate": Bad(
        "tes",
        _raw_second('{"resourceType": "ValueSet", "url": "u", "version": "1", "title": "\\ud800"}'),
        "surrogate",
        record=1,
    ),
    # duplicates
    "two contents, one url|version, one file": Bad(
        "tes", _second(valueset("fine-0", codes=["other"])), "same url|version", record=0
    ),
    "two contents, one url|version, two files": Bad("tes", _two_files, "same url|version", names=(0, 1)),
    # hostile text in the message itself
    "rich markup in the file name": Bad("tes", _markup_file_name, "has no version", record=0),
    "rich markup in the url": Bad(
        "tes",
        _second(_edit(lambda r: (r.update(url="u/[/bogus]"), r.pop("version")))),
        "has no version",
        record=1,
    ),
    "newline in the url": Bad(
        "tes",
        _second(_edit(lambda r: (r.update(url="u/a\nb"), r.pop("version")))),
        "has no version",
        record=1,
    ),
    "terminal escape in the url": Bad(
        "tes",
        _second(_edit(lambda r: (r.update(url="u/\u001b[2J"), r.pop("version")))),
        "has no version",
        record=1,
    ),
    # pathological but refused cleanly: deep nesting, out-of-range numbers, over-long keys
    "nesting 100,000 deep": Bad("tes", _text("deep.json", "[" * 100_000 + "]" * 100_000), "JSON"),
    "number overflowing a double": Bad(
        "tes", _raw_second('{"resourceType": "ValueSet", "url": "u", "version": "1", "x": 1e400}'), "record 1"
    ),
    "incompressible 10 KB url": Bad(
        "tes", _second(_edit(lambda r: r.update(url=f"{TES}/{secrets.token_hex(5000)}"))), "url", record=1
    ),
}


def _configuration(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": 9001,
        "jurisdiction_id": "CA",
        "child_grouper_url": f"{TES}/rs-grouper-840539006",
        "child_grouper_version": "20250328",
        "is_active": True,
    }
    record.update(fields)
    return {key: value for key, value in record.items() if value is not _DROP}


_DROP = object()


def _configs(*records: Any, name: str = "configurations.json") -> Make:
    def make(folder: Path) -> list[Path]:
        return [write_json(folder / name, [_configuration(id=1), *records])]

    return make


def _csv(text: str) -> Make:
    return _text("configurations.csv", text)


CSV_HEADER = "id,jurisdiction_id,child_grouper_url,child_grouper_version,is_active,loinc_codes\n"

CONFIGURATION_CASES: dict[str, Bad] = {
    "empty file": Bad("configurations", _text("c.json", ""), "invalid JSON"),
    "truncated": Bad("configurations", _text("c.json", json.dumps([_configuration()])[:-3]), "invalid JSON"),
    "not UTF-8": Bad("configurations", _text("c.json", b"\xff\xfe[\x00{\x00"), "not UTF-8"),
    "an object, not a list": Bad(
        "configurations", _text("c.json", json.dumps(_configuration())), "expected a JSON list"
    ),
    "record a string": Bad("configurations", _configs("id=2"), "not an object", record=1),
    "missing id": Bad("configurations", _configs(_configuration(id=_DROP)), "missing id", record=1),
    "missing jurisdiction_id": Bad(
        "configurations", _configs(_configuration(jurisdiction_id=_DROP)), "missing jurisdiction_id", record=1
    ),
    "blank jurisdiction_id": Bad(
        "configurations", _configs(_configuration(jurisdiction_id=" ")), "missing jurisdiction_id", record=1
    ),
    "missing child url": Bad(
        "configurations",
        _configs(_configuration(child_grouper_url=None)),
        "missing child_grouper_url",
        record=1,
    ),
    "missing child version": Bad(
        "configurations",
        _configs(_configuration(child_grouper_version=_DROP)),
        "missing child_grouper_version",
        record=1,
    ),
    "id a string": Bad(
        "configurations", _configs(_configuration(id="12")), "id must be an integer", record=1
    ),
    "id a float": Bad("configurations", _configs(_configuration(id=1.5)), "id must be an integer", record=1),
    "id a boolean": Bad(
        "configurations", _configs(_configuration(id=True)), "id must be an integer", record=1
    ),
    "is_active a string": Bad(
        "configurations",
        _configs(_configuration(is_active="yes")),
        "is_active must be true or false",
        record=1,
    ),
    "codes a string": Bad(
        "configurations",
        _configs(_configuration(loinc_codes="1234-5")),
        "loinc_codes must be a list of strings",
        record=1,
    ),
    "a code a number": Bad(
        "configurations",
        _configs(_configuration(snomed_codes=["1", 2])),
        "snomed_codes[1] must be a non-empty string",
        record=1,
    ),
    "duplicate id": Bad("configurations", _configs(_configuration(id=1)), "duplicate id", record=1),
    "unknown field": Bad("configurations", _configs(_configuration(tenant="x")), "unknown field", record=1),
    "NUL in a name": Bad(
        "configurations", _configs(_configuration(display_name_override="a\u0000")), "NUL", record=1
    ),
    "NUL in a code": Bad(
        "configurations", _configs(_configuration(icd10_codes=["A\u000001"])), "NUL", record=1
    ),
    "not a timestamp": Bad(
        "configurations", _configs(_configuration(updated_at="yesterday")), "ISO 8601", record=1
    ),
    "timestamp without zone": Bad(
        "configurations", _configs(_configuration(created_at="2025-01-01T00:00:00")), "time zone", record=1
    ),
    "CSV without a required column": Bad(
        "configurations", _csv("id,jurisdiction_id\n1,CA\n"), "CSV header lacks"
    ),
    "CSV row with extra cells": Bad(
        "configurations", _csv(CSV_HEADER + "1,CA,u,1,true,,surplus\n"), "more cells", record=0
    ),
    "CSV bad boolean": Bad(
        "configurations", _csv(CSV_HEADER + "1,CA,u,1,maybe,\n"), "is_active must be true or false", record=0
    ),
    "CSV id not a number": Bad(
        "configurations", _csv(CSV_HEADER + "x1,CA,u,1,true,\n"), "id must be an integer", record=0
    ),
    "rich markup in an id": Bad(
        "configurations",
        _configs(_configuration(id="[/x] [bold]")),
        "(id [/x] [bold]): id must be an integer",
        record=1,
    ),
    "no such file": Bad("configurations", _missing, "cannot read file"),
    "id beyond bigint": Bad(
        "configurations", _configs(_configuration(id=2**70)), "does not fit in a 64-bit integer", record=1
    ),
    "version beyond integer": Bad(
        "configurations", _configs(_configuration(version=2**40)), "version", record=1
    ),
    "nesting 100,000 deep": Bad("configurations", _text("deep.json", "[" * 100_000 + "]" * 100_000), "JSON"),
}

BAD_CASES = {f"tes: {k}": v for k, v in TES_CASES.items()} | {
    f"configurations: {k}": v for k, v in CONFIGURATION_CASES.items()
}


def _param(name: str) -> Any:
    case = BAD_CASES[name]
    marks = [pytest.mark.xfail(strict=True, reason=case.known_defect)] if case.known_defect else []
    return pytest.param(name, marks=marks, id=name)


@pytest.fixture(scope="module")
def loaded(module_database: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> DatabaseSettings:
    """The module's database holding good TES data, configurations and one rejected record."""
    folder = tmp_path_factory.mktemp("baseline")
    good = write_json(folder / "good.json", _fetch([valueset(f"good-{n}") for n in range(5)]))
    load_tes([good], module_database)
    mixed = write_json(folder / "mixed.json", [valueset("good-5"), _without("url")])
    load_tes([mixed], module_database, skip_invalid=True)
    configurations = write_json(
        folder / "configurations.json",
        [_configuration(id=n, jurisdiction_id=j) for n, j in ((1, "CA"), (2, "TX"))],
    )
    load_configurations(configurations, module_database)
    counts = query(
        module_database,
        "select (select count(*) from raw.tes_valuesets),"
        " (select count(*) from raw.configurations),"
        " (select count(*) from raw.rejected_records)",
    )
    assert counts == [(6, 2, 1)]
    return module_database


def _assert_one_clear_line(stderr: str, paths: list[Path], case: Bad) -> str:
    lines = error_lines(stderr)
    assert "Traceback" not in stderr, stderr[-2000:]
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {stderr[:1000]!r}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert "\x1b" not in line, "a raw terminal escape reached the terminal"
    for index in case.names:
        assert str(paths[index]) in line, f"{paths[index]} not named in {line!r}"
    if case.record is not None:
        assert f"record {case.record}" in line, line
    assert case.reason in line, line
    return line


@dataclass(frozen=True)
class Outcome:
    paths: list[Path]
    result: subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class Batch:
    """Every refused case, run against one database (three CLI processes at a time)."""

    outcomes: dict[str, Outcome]
    before: dict[str, tuple[int, str]]
    after: dict[str, tuple[int, str]]
    loads_before: list[tuple[int, str, str, str | None]]
    loads_after: list[tuple[int, str, str, str | None]]


@pytest.fixture(scope="module")
def batch(loaded: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Batch:
    """Run the whole corpus once; the tests below judge each case and the tables.

    The cases run concurrently (the CPU, not the database, is the bottleneck of ~80 Python
    processes); a refused load changes nothing, so the raw tables must be identical before and
    after the whole batch, and each case may add at most one 'failed' raw.loads row naming its
    own file (every case writes to its own folder).
    """
    prepared = {}
    for number, name in enumerate(BAD_CASES):
        folder = tmp_path_factory.mktemp(f"case{number:02d}")
        prepared[name] = BAD_CASES[name].make(folder)
    before, loads_before = table_hashes(loaded), loads(loaded)

    def run(name: str) -> Outcome:
        paths = prepared[name]
        args = ["load", BAD_CASES[name].kind, "--lock-timeout", "120", *map(str, paths)]
        return Outcome(paths, refinery(args, loaded, timeout=240))

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = dict(zip(prepared, pool.map(run, prepared), strict=True))
    return Batch(outcomes, before, table_hashes(loaded), loads_before, loads(loaded))


@pytest.mark.parametrize("name", [_param(name) for name in BAD_CASES])
def test_bad_input_is_refused_with_one_clear_line(name: str, batch: Batch) -> None:
    case, outcome = BAD_CASES[name], batch.outcomes[name]
    result = outcome.result
    assert result.returncode == case.exit_code, (result.returncode, result.stderr[-2000:])
    _assert_one_clear_line(result.stderr, outcome.paths, case)
    assert result.stdout == ""
    recorded = [
        row
        for row in batch.loads_after[len(batch.loads_before) :]
        if row[3] and str(outcome.paths[0]) in row[3]
    ]
    assert len(recorded) <= 1
    assert all(kind == case.kind and status == "failed" for _, kind, status, _ in recorded)


def test_refused_inputs_left_every_raw_table_unchanged(batch: Batch) -> None:
    assert batch.after == batch.before
    assert set(batch.after) >= {
        "raw.tes_valuesets",
        "raw.configurations",
        "raw.loads",
        "raw.rejected_records",
    }
    assert batch.loads_after[: len(batch.loads_before)] == batch.loads_before
    new_rows = batch.loads_after[len(batch.loads_before) :]
    assert {status for _, _, status, _ in new_rows} <= {"failed"}
    assert len(new_rows) <= len(BAD_CASES)


# --- odd but valid: loads as data ------------------------------------------------------------------


def _huge(folder: Path) -> list[dict[str, Any]]:
    return [valueset("huge-200k", codes=[f"{n:07d}" for n in range(200_000)])]


def _unknown_systems(folder: Path) -> list[dict[str, Any]]:
    record = valueset("unknown-systems", system="urn:example:made-up-system")
    record["compose"]["include"].append(
        {"system": "http://example.org/not-a-real-terminology", "concept": [{"code": "X-1"}]}
    )
    return [record]


def _unversioned_reference(folder: Path) -> list[dict[str, Any]]:
    record = valueset("cg-unversioned-ref")
    record["compose"] = {"include": [{"valueSet": [f"{TES}/rs-grouper-840539006"]}]}
    return [record]


def _control_characters(folder: Path) -> list[dict[str, Any]]:
    odd = "a\u0001b\u001b[31mc\u007fd\te\nf\r\u2028g\u00a0h"
    return [valueset("control-chars", codes=[odd, "\u200b"], title=odd)]


def _long_strings(folder: Path) -> list[dict[str, Any]]:
    record = valueset("long-strings", codes=["C" * 2_000], title="T" * 5_000_000)
    record["description"] = secrets.token_hex(500_000)
    return [record]


def _hostile(folder: Path) -> list[dict[str, Any]]:
    return [
        valueset(
            "hostile-'); drop table raw.loads; --",
            "1.0'$$\\",
            codes=["'); drop table raw.loads; --", "$$ $x$", "\\\\N", "\\.", "🦠", "\u202eabc"],
            title='Robert"); drop table raw.tes_valuesets; -- 𝕳 مرحبا',
        )
    ]


VALID_CASES: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    "a 200,000-code ValueSet": _huge,
    "unknown code systems": _unknown_systems,
    "a reference without a version": _unversioned_reference,
    "control characters other than NUL": _control_characters,
    "absurdly long title and description": _long_strings,
    "hostile strings": _hostile,
}


@pytest.mark.parametrize("name", list(VALID_CASES))
def test_odd_but_valid_input_loads_as_data(name: str, loaded: DatabaseSettings, tmp_path: Path) -> None:
    records = VALID_CASES[name](tmp_path)
    path = write_json(tmp_path / "valid.json", _fetch(records))
    before = query(loaded, "select count(*) from raw.tes_valuesets")[0][0]

    first = refinery(["load", "tes", str(path)], loaded, timeout=180)
    second = refinery(["load", "tes", str(path)], loaded, timeout=180)

    assert first.returncode == 0, first.stderr[-2000:]
    assert f"{len(records)} inserted" in first.stdout
    assert second.returncode == 0 and f"{len(records)} unchanged" in second.stdout
    assert query(loaded, "select count(*) from raw.tes_valuesets")[0][0] == before + len(records)
    for record in records:
        stored = query(
            loaded,
            "select resource from raw.tes_valuesets where canonical_url = %s and version = %s",
            (record["url"], record["version"]),
        )
        assert stored == [(record,)]


def test_utf8_bom_and_an_identical_duplicate_load_once(loaded: DatabaseSettings, tmp_path: Path) -> None:
    record = valueset("bom-and-duplicate")
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_fetch([record, record])).encode())
    result = refinery(["load", "tes", str(path)], loaded)
    assert result.returncode == 0, result.stderr
    assert query(
        loaded, "select count(*) from raw.tes_valuesets where canonical_url = %s", (record["url"],)
    ) == [(1,)]


def test_the_corpus_is_broad() -> None:
    """Issue 8 asks for at least 30 distinct cases across TES and configuration files."""
    assert len(BAD_CASES) + len(VALID_CASES) + 1 >= 30
    assert len(TES_CASES) >= 15 and len(CONFIGURATION_CASES) >= 15
