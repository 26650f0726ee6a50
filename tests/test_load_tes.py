"""`refinery load tes` against a real PostgreSQL: formats, idempotency, reverts, bad input,
--skip-invalid, hostile-but-valid data, a connection killed mid-COPY, production scale."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loaders.errors import InvalidInputError, RefineryError
from loaders.land.reader import canonical_bytes, canonical_json, content_sha256
from loaders.land.tes import load_tes
from refinery import cli
from refinery.connection import DatabaseSettings
from tests._land_helpers import (
    failed_loads,
    fetch_format,
    fingerprint,
    query,
    valueset,
    write_json,
)
from tests.conftest import SHARED_SAMPLE

# --- formats and idempotency ------------------------------------------------------------------


def test_every_input_format_loads(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    folder = tmp_path / "tes"
    write_json(
        folder / "condition_grouper_1.0.0.json",
        fetch_format("condition_grouper", [valueset("cg-a"), valueset("cg-b")]),
    )
    write_json(folder / "reporting_spec_grouper_1.part01.json", fetch_format("rs", [valueset("rs-1")]))
    write_json(folder / "reporting_spec_grouper_1.part02.json", fetch_format("rs", [valueset("rs-2")]))
    write_json(folder / "nested" / "list.json", [valueset("list-1"), valueset("list-2")])
    write_json(folder / "single.json", valueset("single"))
    write_json(
        folder / "bundle.json",
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": valueset("bundle-1"), "search": {"mode": "match"}},
                {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
            ],
        },
    )
    write_json(folder / "manifest.json", {"manifest_version": 2, "files": {}})
    write_json(folder / ".staging" / "ignored.json", {"not": "tes"})

    result = load_tes([folder], fresh_database)

    assert result.inserted == 8 and result.unchanged == 0 and result.rejected == 0
    assert len(result.files) == 6
    names = {name for (name,) in query(fresh_database, "select resource ->> 'id' from raw.tes_valuesets")}
    assert names == {"cg-a", "cg-b", "rs-1", "rs-2", "list-1", "list-2", "single", "bundle-1"}
    stored = query(
        fresh_database,
        "select canonical_url, version, resource, resource_sha256, source_file, load_id,"
        " last_seen_load_id from raw.tes_valuesets where resource ->> 'id' = 'single'",
    )
    url, version, resource, sha, source, load_id, last_seen = stored[0]
    assert resource == valueset("single")
    assert (url, version) == (valueset("single")["url"], "1.0.0")
    assert sha == content_sha256(valueset("single"))
    assert source.endswith("single.json")
    assert load_id == last_seen == result.load_id
    (files,) = query(fresh_database, "select files from raw.loads where load_id = %s", (result.load_id,))[0]
    assert sorted(Path(item["path"]).name for item in files) == sorted(
        [
            "bundle.json",
            "condition_grouper_1.0.0.json",
            "list.json",
            "reporting_spec_grouper_1.part01.json",
            "reporting_spec_grouper_1.part02.json",
            "single.json",
        ]
    )
    assert all(len(item["sha256"]) == 64 and item["bytes"] > 0 for item in files)


def test_loading_twice_keeps_one_copy_and_changes_nothing(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    file = write_json(tmp_path / "cg.json", fetch_format("cg", [valueset(f"vs-{n}") for n in range(20)]))
    first = load_tes([file], fresh_database)
    before = fingerprint(fresh_database)["raw.tes_valuesets"]
    second = load_tes([file, tmp_path], fresh_database)  # the same file twice: still one copy

    assert (first.inserted, second.inserted, second.unchanged, second.revived) == (20, 0, 20, 0)
    assert fingerprint(fresh_database)["raw.tes_valuesets"] == before
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(20,)]
    loads = query(
        fresh_database, "select status, inserted_count, unchanged_count from raw.loads order by load_id"
    )
    assert loads == [("succeeded", 20, 0), ("succeeded", 0, 20)]


def _current(settings: DatabaseSettings, url: str) -> list[Any]:
    """Titles ordered by the downstream rule: highest last_seen_load_id wins."""
    return [
        title
        for (title,) in query(
            settings,
            "select resource ->> 'title' from raw.tes_valuesets where canonical_url = %s"
            " order by last_seen_load_id desc, valueset_id desc",
            (url,),
        )
    ]


def test_changed_content_is_a_new_row_and_a_revert_moves_last_seen(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    original = valueset("rs-9", "20250328", ["1", "2"], title="original")
    changed = valueset("rs-9", "20250328", ["1", "2", "3"], title="changed")
    url = original["url"]
    a = write_json(tmp_path / "a.json", [original])
    b = write_json(tmp_path / "b.json", [changed])

    first = load_tes([a], fresh_database)
    second = load_tes([b], fresh_database)
    assert (second.inserted, second.revived) == (1, 0)
    assert _current(fresh_database, url) == ["changed", "original"]

    third = load_tes([a], fresh_database)  # the old content comes back: no new row
    assert (third.inserted, third.revived, third.unchanged) == (0, 1, 0)
    assert _current(fresh_database, url) == ["original", "changed"]
    rows = query(
        fresh_database,
        "select resource ->> 'title', load_id, last_seen_load_id from raw.tes_valuesets order by valueset_id",
    )
    assert rows == [("original", first.load_id, third.load_id), ("changed", second.load_id, second.load_id)]

    before = fingerprint(fresh_database)
    again = load_tes([a], fresh_database)  # a plain re-run changes nothing at all
    assert (again.inserted, again.revived, again.unchanged) == (0, 0, 1)
    assert fingerprint(fresh_database)["raw.tes_valuesets"] == before["raw.tes_valuesets"]


def test_real_sample_loads_once(fresh_database: DatabaseSettings) -> None:
    if not SHARED_SAMPLE.is_dir():
        pytest.skip("../shared/tes-sample is not present")
    first = load_tes([SHARED_SAMPLE], fresh_database)
    second = load_tes([SHARED_SAMPLE], fresh_database)
    assert first.inserted == first.records == 201 + 218 + 235 + 2
    assert (second.inserted, second.unchanged) == (0, first.inserted)
    stored = query(
        fresh_database,
        "select resource from raw.tes_valuesets where canonical_url like %s",
        ("%rs-grouper-840539006",),
    )
    sample = json.loads((SHARED_SAMPLE / "rs-groupers-covid.json").read_text())
    assert [row[0] for row in stored] == [vs for vs in sample if vs["url"].endswith("rs-grouper-840539006")]


# --- bad input --------------------------------------------------------------------------------


def _nul_title() -> dict[str, Any]:
    return valueset("nul", title="bad\u0000title")


def _bad_concept() -> dict[str, Any]:
    record = valueset("bad-concept")
    record["compose"]["include"][0]["concept"] = {"code": "1"}
    return record


def _bad_code() -> dict[str, Any]:
    record = valueset("bad-code")
    record["compose"]["include"][0]["concept"][1]["code"] = 840539006
    return record


def _bad_include() -> dict[str, Any]:
    record = valueset("bad-include")
    record["compose"]["include"] = {"system": "x"}
    return record


def _no_url() -> dict[str, Any]:
    record = valueset("no-url")
    del record["url"]
    return record


def _no_version() -> dict[str, Any]:
    record = valueset("no-version")
    del record["version"]
    return record


BAD_RECORDS = {
    "no url": (_no_url, "has no url"),
    "no version": (_no_version, "has no version"),
    "concept not a list": (_bad_concept, "concept is not a list"),
    "code not a string": (_bad_code, "code is not a non-empty string"),
    "include not a list": (_bad_include, "compose.include is not a list"),
    "NUL in a title": (_nul_title, "NUL"),
    "NUL in a code": (lambda: valueset("nul-code", codes=["1\u0000"]), "NUL"),
    "not a ValueSet": (lambda: {"resourceType": "Patient", "id": "p"}, "not a ValueSet"),
}


def _loaded_baseline(settings: DatabaseSettings, folder: Path) -> dict[str, str | None]:
    good = write_json(folder / "good.json", fetch_format("cg", [valueset("good-1"), valueset("good-2")]))
    load_tes([good], settings)
    return fingerprint(settings)


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_record_refuses_the_load_and_writes_nothing(
    case: str,
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    use_database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make, reason = BAD_RECORDS[case]
    use_database(fresh_database)
    before = _loaded_baseline(fresh_database, tmp_path / "base")
    bad = write_json(tmp_path / "in" / "bad.json", fetch_format("rs", [valueset("fine"), make()]))
    also = write_json(tmp_path / "in" / "another.json", [valueset("another")])  # valid, read first

    code = cli.main(["load", "tes", str(tmp_path / "in")])

    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" not in err and len([line for line in err.splitlines() if line.strip()]) == 1
    assert f"{bad}: record 1" in err and reason in err
    assert fingerprint(fresh_database) == before
    failures = failed_loads(fresh_database)
    assert len(failures) == 1 and failures[0][0] == "tes" and str(bad) in failures[0][1]
    assert also.exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            '{"metadata": {"category": "cg"}, "valuesets": [{"resourceType": "ValueSet", "url"',
            "truncated JSON",
        ),
        ("", "truncated JSON"),
        (
            '[{"resourceType": "ValueSet", "url": "https://tes.example.org/fhir/ValueSet/x", "title": "cut',
            "truncated",
        ),
        ("{not json}", "invalid JSON"),
        ('{"hello": "world"}', "not TES data"),
        ('{"valuesets": {"a": 1}}', "not TES data"),
        ('"just a string"', "not TES data"),
        ('[{"resourceType": "ValueSet", "url": "u", "version": "1", "title": "\\ud800"}]', "unpaired UTF-16"),
        ('[{"resourceType": "ValueSet", "url": "u", "version": "1", "x": NaN}]', "NaN"),
    ],
)
def test_unreadable_or_foreign_file_refuses_the_load(
    content: str,
    reason: str,
    fresh_database: DatabaseSettings,
    tmp_path: Path,
    use_database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_database(fresh_database)
    before = _loaded_baseline(fresh_database, tmp_path / "base")
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")

    code = cli.main(["load", "tes", str(tmp_path / "base" / "good.json"), str(bad)])

    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err
    assert str(bad) in err and reason in err
    assert fingerprint(fresh_database) == before


def test_binary_file_and_missing_path(
    fresh_database: DatabaseSettings, tmp_path: Path, use_database, capsys: pytest.CaptureFixture[str]
) -> None:
    use_database(fresh_database)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    assert cli.main(["load", "tes", str(binary)]) == 3
    assert str(binary) in capsys.readouterr().err
    assert cli.main(["load", "tes", str(tmp_path / "missing")]) == 3
    assert "no such file or folder" in capsys.readouterr().err
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(0,)]


def test_two_contents_for_one_url_version_in_one_load_is_refused(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    one = write_json(tmp_path / "one.json", [valueset("dup", codes=["1"])])
    two = write_json(tmp_path / "two.json", [valueset("x"), valueset("dup", codes=["2"])])
    with pytest.raises(InvalidInputError) as caught:
        load_tes([one, two], fresh_database)
    message = str(caught.value)
    assert str(one) in message and str(two) in message and "dup|1.0.0" in message
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(0,)]


def test_skip_invalid_loads_the_valid_records_and_rejects_the_rest(
    fresh_database: DatabaseSettings, tmp_path: Path, use_database, capsys: pytest.CaptureFixture[str]
) -> None:
    use_database(fresh_database)
    folder = tmp_path / "in"
    write_json(
        folder / "a.json", fetch_format("rs", [valueset("ok-1"), _bad_code(), valueset("ok-2"), _nul_title()])
    )
    (folder / "b.json").write_text('{"valuesets": [', encoding="utf-8")
    write_json(
        folder / "c.json", [valueset("dup", codes=["1"]), valueset("dup", codes=["2"]), valueset("ok-3")]
    )

    assert cli.main(["load", "tes", "--skip-invalid", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "3 inserted" in out and "5 rejected" in out

    ids = sorted(row[0] for row in query(fresh_database, "select resource ->> 'id' from raw.tes_valuesets"))
    assert ids == ["ok-1", "ok-2", "ok-3"]
    rejected = query(
        fresh_database,
        "select source_file, record_index, record_key, reason, record is not null"
        " from raw.rejected_records order by source_file, record_index",
    )
    assert [(Path(r[0]).name, r[1]) for r in rejected] == [
        ("a.json", 1),
        ("a.json", 3),
        ("b.json", None),
        ("c.json", 0),
        ("c.json", 1),
    ]
    assert "code is not a non-empty string" in rejected[0][3]
    assert "NUL" in rejected[1][3] and rejected[1][2].endswith("/nul|1.0.0")
    assert "truncated JSON" in rejected[2][3] and rejected[2][4] is False
    assert all("same url|version" in row[3] for row in rejected[3:])
    (counts,) = query(
        fresh_database,
        "select inserted_count, rejected_count, status from raw.loads where status = 'succeeded'",
    )
    assert counts == (3, 5, "succeeded")


# --- hostile but valid --------------------------------------------------------------------------

HOSTILE_TITLE = (
    '\'); drop table raw.loads; -- "quoted" ; semi;colons \\ back\\slash \t tab \n newline \\. end'
)
RTL = "\u202eשלום עולם مرحبا\u202c"


def test_hostile_but_valid_file_loads_as_plain_data(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    records = [
        valueset(
            "hostile-1",
            "1.0.0'; drop table raw.tes_valuesets; --",
            ["'); drop table raw.loads; --", "🦠-1", RTL],
            title=HOSTILE_TITLE,
        ),
        valueset("hostile-2", "2.0.0", ["a\tb", "c\\d", "\\.", "e\nf"], title=f"{RTL} 🧪 emoji 👩🏽‍⚕️"),
        valueset(f"rtl-{RTL}", "3.0.0", ["\u0627\u0644\u0639\u0631\u0628\u064a\u0629"], title="ק\"ט'"),
    ]
    file = write_json(tmp_path / "hostile; rm -rf .json", records)

    first = load_tes([file], fresh_database)
    second = load_tes([file], fresh_database)

    assert (first.inserted, second.unchanged) == (3, 3)
    stored = query(
        fresh_database,
        "select canonical_url, version, resource, resource_sha256, source_file from raw.tes_valuesets"
        " order by valueset_id",
    )
    by_url = {row[0]: row for row in stored}
    for record in records:
        _url, version, resource, sha, source = by_url[record["url"]]
        assert (version, resource, sha, source) == (
            record["version"],
            record,
            content_sha256(record),
            str(file),
        )
    codes = query(
        fresh_database,
        "select concept ->> 'code' from raw.tes_valuesets,"
        " jsonb_array_elements(resource -> 'compose' -> 'include' -> 0 -> 'concept') as concept"
        " order by valueset_id, concept ->> 'code'",
    )
    assert ("'); drop table raw.loads; --",) in codes and ("🦠-1",) in codes and ("\\.",) in codes
    assert query(fresh_database, "select to_regclass('raw.loads') is not null") == [(True,)]


def test_control_characters_in_keys_and_file_names_are_stored_verbatim(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    """Binary COPY sends values as they are: no escaping to get wrong for tabs, newlines, \\."""
    odd = "a\tb\nc\rd\\e \\N \\."
    record = valueset(f"odd-{odd}", f"1.0.0{odd}", [odd], title=odd)
    folder = tmp_path / f"folder{odd}"
    file = write_json(folder / f"file{odd}.json", [record])

    result = load_tes([file], fresh_database)

    assert result.inserted == 1
    stored = query(
        fresh_database,
        "select canonical_url, version, resource, resource_sha256, source_file, load_id,"
        " last_seen_load_id from raw.tes_valuesets",
    )
    assert stored == [
        (
            record["url"],
            record["version"],
            record,
            content_sha256(record),
            str(file),
            result.load_id,
            result.load_id,
        )
    ]


def test_loaded_at_is_the_load_transaction_time(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    file = write_json(tmp_path / "a.json", [valueset(f"t-{n}") for n in range(3)])
    result = load_tes([file], fresh_database)
    rows = query(
        fresh_database,
        "select distinct stored.loaded_at, loads.started_at, loads.finished_at"
        " from raw.tes_valuesets as stored inner join raw.loads using (load_id) where load_id = %s",
        (result.load_id,),
    )
    assert len(rows) == 1
    loaded_at, started_at, finished_at = rows[0]
    assert started_at - timedelta(seconds=5) <= loaded_at <= finished_at


def test_new_unchanged_and_reverted_contents_in_one_load_are_counted(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    a1, a2 = valueset("a", codes=["1"]), valueset("a", codes=["2"])
    b, c = valueset("b"), valueset("c")
    load_tes([write_json(tmp_path / "1.json", [a1, b])], fresh_database)
    load_tes([write_json(tmp_path / "2.json", [a2, b])], fresh_database)

    # a1 comes back (revert), b again (unchanged), c is new and appears twice (one row)
    third = load_tes([write_json(tmp_path / "3.json", [a1, b, c, copy.deepcopy(c)])], fresh_database)

    assert (third.inserted, third.revived, third.unchanged) == (1, 1, 1)
    (counts,) = query(
        fresh_database,
        "select inserted_count, unchanged_count from raw.loads where load_id = %s",
        (third.load_id,),
    )
    assert counts == (2, 1)
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(4,)]


# --- the canonical JSON ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_VALUES)
@settings(max_examples=300, deadline=None)
def test_fast_canonical_bytes_equal_the_json_module(value: Any) -> None:
    try:
        expected = canonical_json(value).encode()
    except UnicodeEncodeError:  # lone surrogates: refused either way
        with pytest.raises((UnicodeEncodeError, TypeError)):
            canonical_bytes(value, has_floats=False)
        return
    assert canonical_bytes(value, has_floats=False) == expected


def test_floats_are_hashed_with_the_json_module(fresh_database: DatabaseSettings, tmp_path: Path) -> None:
    record = valueset("floats")
    record["extension"] = [{"url": "x", "valueDecimal": 1e-07}, {"url": "y", "valueDecimal": 1e16}]
    file = tmp_path / "floats.json"
    file.write_text(json.dumps([record]), encoding="utf-8")
    load_tes([file], fresh_database)
    (sha,) = query(fresh_database, "select resource_sha256 from raw.tes_valuesets")[0]
    assert sha == content_sha256(record)


# --- a connection killed mid-COPY ------------------------------------------------------------------


def _big_files(folder: Path, files: int, per_file: int) -> list[Path]:
    codes = [f"{n:08d}" for n in range(400)]
    paths = []
    for f in range(files):
        records = [valueset(f"big-{f}-{n}", codes=codes) for n in range(per_file)]
        paths.append(write_json(folder / f"big_{f:02d}.json", fetch_format("rs", records)))
    return paths


def test_connection_killed_mid_copy_writes_nothing_and_next_load_succeeds(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    baseline = write_json(tmp_path / "base.json", [valueset("before")])
    load_tes([baseline], fresh_database)
    before = fingerprint(fresh_database)
    paths = _big_files(tmp_path / "big", files=12, per_file=150)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            load_tes(paths, fresh_database)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    killed = False
    with psycopg.connect(fresh_database.conninfo(), autocommit=True) as admin:
        worker.start()
        deadline = time.monotonic() + 30
        while not killed and worker.is_alive() and time.monotonic() < deadline:
            killed = bool(
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = current_database() and pid <> pg_backend_pid()"
                    " and query like 'copy raw.tes_valuesets%%' and state = 'active'"
                ).fetchall()
            )
            time.sleep(0.02)
        worker.join(60)
    assert killed, "the COPY finished before it could be killed"
    assert isinstance(outcome.get("error"), RefineryError)
    assert "nothing was written" in str(outcome["error"])
    assert fingerprint(fresh_database) == before
    assert len(failed_loads(fresh_database)) == 1

    result = load_tes(paths[:2], fresh_database)
    assert result.inserted == 300
    assert query(fresh_database, "select count(*) from raw.tes_valuesets") == [(301,)]


# --- production scale -------------------------------------------------------------------------------


@pytest.mark.slow
def test_production_scale_synthetic_data_twice_leaves_one_copy(
    fresh_database: DatabaseSettings, tmp_path: Path
) -> None:
    synthetic = pytest.importorskip("refinery.synthetic")
    summary = synthetic.generate(tmp_path / "synthetic", synthetic.SyntheticSpec(jurisdictions=51))
    first = load_tes([summary.tes_dir], fresh_database)
    after_first = fingerprint(fresh_database)["raw.tes_valuesets"]
    second = load_tes([summary.tes_dir], fresh_database)
    print(f"\nproduction scale: {first.describe()}\nre-run: {second.describe()}")

    assert first.inserted == first.records > 1000 and first.rejected == 0
    assert (second.inserted, second.revived, second.unchanged) == (0, 0, first.inserted)
    assert fingerprint(fresh_database)["raw.tes_valuesets"] == after_first
    distinct = query(
        fresh_database,
        "select count(*), count(distinct (canonical_url, version)) from raw.tes_valuesets",
    )
    assert distinct == [(first.inserted, first.inserted)]
    rs_groupers = query(
        fresh_database,
        "select count(*) from raw.tes_valuesets where canonical_url like '%%/rs-grouper-%%'",
    )[0][0]
    assert rs_groupers == summary.counts["reporting_spec_grouper"] > 500
    assert first.records == sum(
        summary.counts[kind]
        for kind in ("condition_grouper", "reporting_spec_grouper", "additional_context_grouper")
    )


def test_records_are_released_while_streaming(tmp_path: Path) -> None:
    from loaders.land.reader import TesFile

    records = [valueset(f"r-{n}") for n in range(5)]
    document = TesFile(write_json(tmp_path / "x.json", fetch_format("rs", copy.deepcopy(records))))
    rows = list(document.items())
    assert [row.canonical_url for row in rows] == [r["url"] for r in records]
    assert document._records == []
