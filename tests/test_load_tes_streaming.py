"""`load tes` parses fetch-format files record by record (msgspec) while it sends them: what it
reads and refuses must be what parsing the whole file with the json module gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loaders.errors import InvalidInputError
from loaders.land.reader import FileRejected, TesFile, ValueSetRow
from loaders.land.tes import load_tes
from refinery.connection import DatabaseSettings
from tests._land_helpers import query

BOM = b"\xef\xbb\xbf"  # a file starting with one is parsed whole by the json module

FINE = json.dumps(
    {
        "resourceType": "ValueSet",
        "url": "u0",
        "version": "1",
        "compose": {"include": [{"system": "s", "concept": [{"code": "a"}]}]},
    }
)

BODIES = [
    '"x": NaN',
    '"x": -Infinity',
    '"x": ' + "9" * 5000,
    '"x": 1e400',
    '"x": 2.5e-400',
    '"x": 1.5',
    '"x": 1e-7',
    '"x": 1E5',
    '"x": -0',
    '"x": -0.0',
    '"x": 0.1',
    '"x": 5e-324',
    '"x": 123456789012345678901234567890',
    '"title": "\\ud800"',
    '"title": "\\ud83d\\ude00"',
    '"title": "a\\u0000b"',
    '"title": "caf\u00e9 \\u00e9\\/"',
    '"a": 1, "a": 2',
    '"x": ' + "[" * 990 + "]" * 990,
    '"x": ' + "[" * 3000 + "]" * 3000,
]


def _record(body: str) -> str:
    return '{"resourceType": "ValueSet", "url": "u", "version": "1", ' + body + "}"


def _documents() -> list[bytes]:
    documents = []
    for body in BODIES:
        documents.append(('{"metadata": {}, "valuesets": [' + FINE + ", " + _record(body) + "]}").encode())
        documents.append(("[" + _record(body) + ', {"resourceType": "ValueSet"}, ' + FINE + "]").encode())
    return [
        *documents,
        b'[{"title": "\xed\xa0\x80", "resourceType": "ValueSet", "url": "u", "version": "1"}]',
        b'[{"title": "caf\xe9"}]',
        ("[" + FINE + ', {"title": "caf').encode() + b"\xe9" + b'"}, ' + FINE.encode() + b"]",
        b'{"metadata": {"n": ' + b"9" * 5000 + b'}, "valuesets": [' + FINE.encode() + b"]}",
        b'{"metadata": {"t": "caf\xe9"}, "valuesets": [' + FINE.encode() + b"]}",
        b'{"metadata": {"t": "caf\xc3\xa9 \xed\xa0\x80"}, "valuesets": [' + FINE.encode() + b"]}",
        b'{"valuesets": ["\xff"], "valuesets": [' + FINE.encode() + b"]}",
        b'{"valuesets": [' + b"9" * 5000 + b'], "valuesets": [' + FINE.encode() + b"]}",
        b'{"valuesets": [' + FINE.encode() + b'], "metadata": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'\n  {"valuesets": [\n  ' + FINE.encode() + b" ,\n " + FINE.encode() + b"\n]}\n",
        b'{"valuesets": [1], "valuesets": [' + FINE.encode() + b"]}",
        b'{"valuesets": null}',
        b"[1,]",
        b"[]",
    ]


def _read(path: Path) -> object:
    """Everything a TesFile yields, with the file's name taken out of messages."""
    try:
        document = TesFile(path)
        items = [
            (item.index, item.canonical_url, item.version, item.sha256, item.data)
            if isinstance(item, ValueSetRow)
            else (item.index, item.key, item.reason, item.record)
            for item in document.items()
        ]
    except FileRejected as exc:
        return ("refused", exc.rejection.reason)
    return (document.count, items)


def test_fetch_files_and_lists_are_parsed_record_by_record(tmp_path: Path) -> None:
    for name, text in {"fetch": '{"metadata": {}, "valuesets": [' + FINE + "]}", "list": f"[{FINE}]"}.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        assert TesFile(path)._lazy
        path.write_bytes(BOM + text.encode())
        assert not TesFile(path)._lazy


@pytest.mark.parametrize("number", range(len(_documents())))
def test_record_by_record_reads_what_the_json_module_reads(number: int, tmp_path: Path) -> None:
    data = _documents()[number]
    streamed, whole = tmp_path / "streamed.json", tmp_path / "whole.json"
    streamed.write_bytes(data)
    whole.write_bytes(BOM + data)
    assert _read(streamed) == _read(whole)


def _files(folder: Path, bad_records: list[str]) -> list[Path]:
    folder.mkdir()
    good = folder / "a_good.json"
    good.write_text("[" + FINE + "]")
    bad = folder / "b_bad.json"
    bad.write_text('{"metadata": {}, "valuesets": [' + ", ".join(bad_records) + "]}")
    return [good, bad]


HUGE = '{"x": ' + "9" * 5000 + "}"
CASES = {
    "a record problem before": [FINE, '{"resourceType": "ValueSet"}', HUGE],
    "a conflict before": [FINE, FINE.replace('"a"', '"b"'), HUGE],
    "rows before": [_record('"x": 1').replace('"u"', '"u1"'), _record('"x": 2').replace('"u"', '"u2"'), HUGE],
}


@pytest.mark.parametrize("case", CASES)
def test_a_file_unreadable_past_its_first_records_is_refused_whole(
    case: str, fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    files = _files(tmp_path / "tes", CASES[case])

    with pytest.raises(InvalidInputError, match=r"b_bad\.json: unreadable JSON: Exceeds the limit"):
        load_tes(files, fresh_database)
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(0,)]

    result = load_tes(files, fresh_database, skip_invalid=True)
    assert (result.inserted, result.rejected) == (1, 1)
    assert query(fresh_database, "select canonical_url from raw.tes_valuesets") == [("u0",)]
    rejected = query(fresh_database, "select source_file, record_index, reason from raw.rejected_records")
    assert len(rejected) == 1 and rejected[0][0] == str(files[1]) and rejected[0][1] is None
    assert rejected[0][2].startswith("unreadable JSON: Exceeds the limit")


@pytest.mark.parametrize("shape", ["fetch", "list"])
def test_nesting_near_the_recursion_limit_loads_or_refuses_the_file(shape: str, tmp_path: Path) -> None:
    """Around Python's recursion limit a record may parse yet be too deep to check or write back:
    the file is then refused as nested too deeply, never a RecursionError traceback."""
    outcomes = set()
    for depth in range(900, 1001, 4):
        record = _record('"x": ' + "[" * depth + "]" * depth)
        text = (
            f"[{FINE}, {record}]"
            if shape == "list"
            else ('{"metadata": {}, "valuesets": [' + FINE + ", " + record + "]}")
        )
        path = tmp_path / f"deep-{depth}.json"
        path.write_text(text)
        result = _read(path)
        outcomes.add(result[0] if result[0] == "refused" else "read")
        if result[0] == "refused":
            assert result[1] == "unreadable JSON: nested too deeply to be TES data"
    assert outcomes == {"read", "refused"}
