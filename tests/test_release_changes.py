"""`tes_release_changes` (and `condition_code_summary`) agree with a recomputation in Python.

The synthetic TES has eleven releases, so string ordering (10.0.0 < 2.0.0) would pair the wrong
releases; one condition is renamed in the last release while keeping the codes of the previous
one, which must not count as a change.
"""

from __future__ import annotations

import copy
import csv
import html
import itertools
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loaders.tes import classify
from refinery import cli
from refinery.connection import DatabaseSettings
from refinery.synthetic import SyntheticSpec, generate
from tests.conftest import SHARED_SAMPLE, create_database, drop_database

REPO = Path(__file__).resolve().parent.parent
SPEC = SyntheticSpec(seed=23, jurisdictions=2, releases=11, conditions=14, configurations_per_jurisdiction=5)
RENAMED_TITLE = "Renamed Condition Without Code Changes"

Codes = dict[str, set[str]]  # system key -> codes
pytestmark = pytest.mark.slow


# --- the recomputation ---------------------------------------------------------------------------


def version_key(version: str) -> tuple[int, tuple[int, ...], str]:
    parts = version.split(".")
    if all(part.isdigit() for part in parts):
        return (0, tuple(int(part) for part in parts), version)
    return (1, (), version)


def system_keys() -> dict[str, str]:
    """System URL (and urn:oid:<oid>) -> short name, from the code_systems seed."""
    keys: dict[str, str] = {}
    with (REPO / "seeds" / "code_systems.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            keys[row["system_url"]] = row["short_name"]
            if row.get("oid"):
                keys[f"urn:oid:{row['oid']}"] = row["short_name"]
    return keys


def valuesets(tes_dir: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(tes_dir.glob("*.json")):
        if path.name == "manifest.json":
            continue
        document = json.loads(path.read_text())
        yield from document["valuesets"] if isinstance(document, dict) else document


def rs_codes(resource: dict[str, Any], keys: dict[str, str]) -> Codes:
    codes: Codes = defaultdict(set)

    def add(system: str | None, code: str | None) -> None:
        if code:
            system = system or "urn:unknown-system"
            codes[keys.get(system, system)].add(code)

    for include in resource.get("compose", {}).get("include", []):
        for concept in include.get("concept", []):
            add(include.get("system"), concept.get("code"))
    stack = list(resource.get("expansion", {}).get("contains", []))
    while stack:
        item = stack.pop()
        add(item.get("system"), item.get("code"))
        stack.extend(item.get("contains", []))
    return codes


@dataclass
class Condition:
    title: str
    codes: Codes


def recompute_conditions(tes_dir: Path) -> dict[tuple[str, str], Condition]:
    """(url, version) of every condition grouper -> its title and the codes of its RS children."""
    keys = system_keys()
    rs: dict[tuple[str, str], Codes] = {}
    conditions: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in valuesets(tes_dir):
        kind = classify.classify(resource)
        key = (resource["url"], resource["version"])
        if kind == classify.REPORTING_SPEC_GROUPER:
            rs[key] = rs_codes(resource, keys)
        elif kind == classify.CONDITION_GROUPER:
            conditions[key] = resource
    out: dict[tuple[str, str], Condition] = {}
    for key, resource in conditions.items():
        codes: Codes = defaultdict(set)
        for include in resource.get("compose", {}).get("include", []):
            for reference in include.get("valueSet", []):
                url, _, version = reference.rpartition("|")
                for system, values in rs.get((url, version), {}).items():
                    codes[system] |= values
        title = resource.get("title") or resource.get("name") or resource["url"]
        out[key] = Condition(title, codes)
    return out


@dataclass(frozen=True)
class ExpectedChange:
    is_new: bool
    is_dropped: bool
    added: dict[str, list[str]]
    removed: dict[str, list[str]]


def recompute_changes(
    conditions: dict[tuple[str, str], Condition],
) -> dict[tuple[str, str, str], ExpectedChange]:
    releases = sorted({version for _, version in conditions}, key=version_key)
    urls = {url for url, _ in conditions}
    expected: dict[tuple[str, str, str], ExpectedChange] = {}
    for previous, current in itertools.pairwise(releases):
        for url in urls:
            before = conditions.get((url, previous))
            after = conditions.get((url, current))
            if before is None and after is None:
                continue
            old = before.codes if before else {}
            new = after.codes if after else {}
            systems = set(old) | set(new)
            added = {s: sorted(new.get(s, set()) - old.get(s, set())) for s in systems}
            removed = {s: sorted(old.get(s, set()) - new.get(s, set())) for s in systems}
            expected[(url, previous, current)] = ExpectedChange(
                is_new=before is None,
                is_dropped=after is None,
                added={s: codes for s, codes in added.items() if codes},
                removed={s: codes for s, codes in removed.items() if codes},
            )
    return expected


# --- the build -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    settings: DatabaseSettings
    tes_dir: Path
    renamed: tuple[str, str, str]  # (url, previous release, last release)


def rename_without_code_change(tes_dir: Path) -> tuple[str, str, str]:
    """In the last release, give one condition a new title and the previous release's references."""
    files = {
        resource["version"]: path
        for path in tes_dir.glob("condition_grouper_*.json")
        for resource in json.loads(path.read_text())["valuesets"][:1]
    }
    releases = sorted(files, key=version_key)
    previous, last = releases[-2], releases[-1]
    before = {vs["url"]: vs for vs in json.loads(files[previous].read_text())["valuesets"]}
    document = json.loads(files[last].read_text())
    target = next(vs for vs in document["valuesets"] if vs["url"] in before)
    target["compose"] = copy.deepcopy(before[target["url"]]["compose"])
    target["title"] = RENAMED_TITLE
    files[last].write_text(json.dumps(document))
    return target["url"], previous, last


@pytest.fixture(scope="module")
def built(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    settings = create_database(server, "refinery_changes")
    out = tmp_path_factory.mktemp("synthetic-releases")
    summary = generate(out, SPEC)
    renamed = rename_without_code_change(summary.tes_dir)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
            patch.delenv(name, raising=False)
        patch.setenv("DATABASE_URL", settings.url(show_password=True))
        try:
            assert cli.main(["load", "tes", str(summary.tes_dir)]) == 0
            assert cli.main(["build"]) == 0
            yield Built(settings, summary.tes_dir, renamed)
        finally:
            drop_database(server, settings)


def mart_rows(settings: DatabaseSettings, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.conninfo()) as conn:
        return conn.execute(query).fetchall()


# --- the tests -----------------------------------------------------------------------------------


def test_release_changes_match_recomputation(built: Built) -> None:
    expected = recompute_changes(recompute_conditions(built.tes_dir))
    rows = mart_rows(
        built.settings,
        """
        select canonical_url, previous_version, version, is_new, is_dropped, codes_added,
               codes_removed, added_count, removed_count, is_changed
        from refiner.tes_release_changes
        """,
    )
    assert len(expected) > 100, "the synthetic data should give many condition/release pairs"
    actual = {(r[0], r[1], r[2]): r[3:] for r in rows}
    assert set(actual) == set(expected), (
        f"pairs differ: missing {sorted(set(expected) - set(actual))[:5]}, "
        f"extra {sorted(set(actual) - set(expected))[:5]}"
    )
    mismatches = []
    for key, change in expected.items():
        is_new, is_dropped, added, removed, added_count, removed_count, is_changed = actual[key]
        got = ExpectedChange(is_new, is_dropped, added, removed)
        total_added = sum(map(len, change.added.values()))
        total_removed = sum(map(len, change.removed.values()))
        changed = change.is_new or change.is_dropped or bool(total_added + total_removed)
        if (
            got != change
            or (added_count, removed_count) != (total_added, total_removed)
            or is_changed != changed
        ):
            mismatches.append((key, got, change))
    assert not mismatches, f"{len(mismatches)} rows differ, first: {mismatches[0]}"
    # The drift of the generator must show up, or this test proves little.
    assert sum(1 for c in expected.values() if c.added and not c.is_new) > 10
    assert sum(1 for c in expected.values() if c.removed and not c.is_dropped) > 10


def test_releases_are_paired_in_version_order(built: Built) -> None:
    pairs = mart_rows(
        built.settings,
        """
        select distinct release_pair_number, previous_version, version
        from refiner.tes_release_changes order by release_pair_number
        """,
    )
    versions = [f"{n}.0.0" for n in range(1, SPEC.releases + 1)]
    assert [(p, c) for _, p, c in pairs] == list(itertools.pairwise(versions))
    assert [n for n, _, _ in pairs] == list(range(1, SPEC.releases))


def test_display_name_change_alone_is_not_a_change(built: Built) -> None:
    url, previous, last = built.renamed
    [(display_name, is_changed, added, removed)] = mart_rows(
        built.settings,
        f"""
        select display_name, is_changed, added_count, removed_count
        from refiner.tes_release_changes
        where canonical_url = '{url}' and previous_version = '{previous}' and version = '{last}'
        """,
    )
    assert display_name == RENAMED_TITLE
    assert (is_changed, added, removed) == (False, 0, 0)


def test_condition_code_summary_counts(built: Built) -> None:
    conditions = recompute_conditions(built.tes_dir)
    rows = mart_rows(
        built.settings,
        """
        select canonical_url, version, code_count, code_count_by_system, snomed_code_count,
               loinc_code_count
        from refiner.condition_code_summary
        """,
    )
    assert len(rows) == len(conditions)
    for url, version, total, by_system, snomed, loinc in rows:
        codes = conditions[(url, version)].codes
        assert by_system == {s: len(c) for s, c in codes.items() if c}, (url, version)
        assert total == sum(len(c) for c in codes.values())
        assert (snomed, loinc) == (len(codes.get("snomed", ())), len(codes.get("loinc", ())))


def test_report_charts_the_most_changed_conditions(built: Built, tmp_path: Path) -> None:
    conditions = recompute_conditions(built.tes_dir)
    churn: dict[str, int] = defaultdict(int)
    for (url, _, _), change in recompute_changes(conditions).items():
        if not change.is_new:
            churn[url] += sum(map(len, change.added.values())) + sum(map(len, change.removed.values()))
    ranked = sorted(churn.items(), key=lambda item: (-item[1], item[0]))
    titles = {url: condition.title for (url, _), condition in conditions.items()}
    out = tmp_path / "report"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
            patch.delenv(name, raising=False)
        patch.setenv("DATABASE_URL", built.settings.url(show_password=True))
        assert cli.main(["report", "--out", str(out)]) == 0
    png = (out / "release_changes.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    page = (out / "release_changes.html").read_text()
    assert "data:image/png;base64," in page
    assert 'src="http' not in page and "<link" not in page, "the page must be self-contained"
    top_url, _ = ranked[0]
    assert html.escape(titles[top_url]) in page
    unchanged = [url for url, total in ranked if total == 0]
    for url in unchanged:
        assert f'title="{html.escape(url)}"' not in page


@pytest.fixture(scope="module")
def real_sample(server: DatabaseSettings) -> Iterator[DatabaseSettings]:
    """The real TES sample (three condition grouper releases, two COVID-19 RS groupers)."""
    if not (SHARED_SAMPLE / "condition_grouper_1.0.0.json").exists():
        pytest.skip(f"real TES sample not present at {SHARED_SAMPLE}")
    settings = create_database(server, "refinery_real_changes")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
            patch.delenv(name, raising=False)
        patch.setenv("DATABASE_URL", settings.url(show_password=True))
        try:
            assert cli.main(["load", "tes", str(SHARED_SAMPLE)]) == 0
            assert cli.main(["build"]) == 0
            yield settings
        finally:
            drop_database(server, settings)


def test_real_sample_release_changes_match_recomputation(real_sample: DatabaseSettings) -> None:
    expected = recompute_changes(recompute_conditions(SHARED_SAMPLE))
    rows = mart_rows(
        real_sample,
        """
        select canonical_url, previous_version, version, is_new, is_dropped, codes_added,
               codes_removed
        from refiner.tes_release_changes
        """,
    )
    actual = {(r[0], r[1], r[2]): ExpectedChange(*r[3:]) for r in rows}
    assert actual == expected
    # 201, 218 and 235 condition groupers: each release adds conditions, none is dropped
    assert sum(c.is_new for c in expected.values()) == 34
    assert any(c.added for c in expected.values() if not c.is_new), "COVID-19 gains its codes"
