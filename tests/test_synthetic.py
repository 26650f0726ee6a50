"""The synthetic TES generator: deterministic, realistic, and shaped like the real TES files."""

from __future__ import annotations

import collections
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from loaders.tes import classify
from refinery import synthetic
from refinery.synthetic import SyntheticSpec
from tests.conftest import SHARED_SAMPLE

SMALL = SyntheticSpec(seed=11, jurisdictions=3, conditions=60, configurations_per_jurisdiction=40)


@pytest.fixture(scope="module")
def valuesets() -> list[dict[str, Any]]:
    return synthetic.generate_valuesets(SyntheticSpec())


def _by_category(valuesets: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    out: dict[str | None, list[dict[str, Any]]] = collections.defaultdict(list)
    for resource in valuesets:
        out[classify.classify(resource)].append(resource)
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_is_byte_identical_for_a_seed(tmp_path: Path) -> None:
    first = synthetic.generate(tmp_path / "a", SMALL)
    second = synthetic.generate(tmp_path / "b", SMALL)
    assert first.counts == second.counts
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    other = synthetic.generate(tmp_path / "c", SyntheticSpec(**{**SMALL.__dict__, "seed": 12}))
    assert _tree(tmp_path / "c") != _tree(tmp_path / "a")
    assert other.counts["configurations"] == 3 * 40


def test_generate_again_rewrites_nothing(tmp_path: Path) -> None:
    summary = synthetic.generate(tmp_path, SMALL)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    again = synthetic.generate(tmp_path, SMALL)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    assert again.counts == summary.counts
    assert before == after


def test_output_layout_matches_the_fetch_format(tmp_path: Path) -> None:
    summary = synthetic.generate(tmp_path, SMALL)
    manifest = json.loads((summary.tes_dir / "manifest.json").read_text())
    assert manifest["manifest_version"] == 2
    names = sorted(p.name for p in summary.tes_dir.glob("*.json") if p.name != "manifest.json")
    assert names == sorted(manifest["files"])
    assert "condition_grouper_1.0.0.json" in names
    assert "reporting_spec_grouper_20250829.json" in names
    assert "additional_context_grouper_2.0.0.json" in names
    total = 0
    for name in names:
        document = json.loads((summary.tes_dir / name).read_text())
        entry = manifest["files"][name]
        assert document["metadata"] == {"category": name.removesuffix(".json")}
        urls = [resource["url"] for resource in document["valuesets"]]
        assert urls == sorted(urls)
        assert entry["record_count"] == len(urls)
        assert {classify.classify(resource) for resource in document["valuesets"]} == {entry["category"]}
        total += len(urls)
    counts = summary.counts
    assert total == (
        counts["condition_grouper"] + counts["reporting_spec_grouper"] + counts["additional_context_grouper"]
    )
    assert manifest["totals"]["ignored_count"] == counts["triggering"] > 0
    configurations = json.loads(summary.configurations_file.read_text())
    assert len(configurations) == counts["configurations"] == 3 * 40


def test_release_sizes_are_realistic(valuesets: list[dict[str, Any]]) -> None:
    groups = _by_category(valuesets)
    per_version = collections.Counter(
        (category, resource["version"])
        for category, items in groups.items()
        if category
        for resource in items
    )
    conditions = [per_version[("condition_grouper", v)] for v in ("1.0.0", "2.0.0", "3.0.0")]
    assert all(195 <= n <= 240 for n in conditions), conditions
    assert conditions == sorted(conditions) and conditions[0] < conditions[-1]
    rs = [n for (category, _), n in per_version.items() if category == "reporting_spec_grouper"]
    assert len(rs) == 3 and all(215 <= n <= 300 for n in rs), rs
    assert 700 <= sum(rs) <= 900
    assert len(groups[None]) > 0
    assert all(classify.TRIGGERING in r["meta"]["profile"][0] for r in groups[None])


def test_each_rs_grouper_version_has_one_parent(valuesets: list[dict[str, Any]]) -> None:
    groups = _by_category(valuesets)
    existing = {f"{r['url']}|{r['version']}" for r in groups["reporting_spec_grouper"]}
    contexts = {f"{r['url']}|{r['version']}" for r in groups["additional_context_grouper"]}
    parents: collections.Counter[str] = collections.Counter()
    children_per_condition = []
    for condition in groups["condition_grouper"]:
        references = [ref for include in condition["compose"]["include"] for ref in include["valueSet"]]
        children_per_condition.append(len(references))
        for reference in references:
            assert reference in existing or reference in contexts, reference
            parents[reference] += 1
    assert set(parents) == existing | contexts
    assert set(parents.values()) == {1}
    assert max(children_per_condition) >= 5
    assert sum(n >= 2 for n in children_per_condition) >= 30
    # the focus SNOMED code is the code in the RS grouper's url; ids are not SNOMED codes
    for resource in groups["reporting_spec_grouper"]:
        focus = [
            coding["code"]
            for context in resource["useContext"]
            if context["code"]["code"] == "focus"
            for coding in context["valueCodeableConcept"]["coding"]
        ]
        assert resource["url"].endswith(f"rs-grouper-{focus[0]}")
        assert resource["id"] != focus[0]


def test_codes_systems_sizes_and_drift(valuesets: list[dict[str, Any]]) -> None:
    groups = _by_category(valuesets)
    rs = groups["reporting_spec_grouper"]
    systems = {include["system"] for r in rs for include in r["compose"]["include"]}
    assert {
        synthetic.SNOMED,
        synthetic.LOINC,
        synthetic.ICD10CM,
        synthetic.RXNORM,
        synthetic.CVX,
        synthetic.CPT,
        synthetic.V3_INTERPRETATION,
        synthetic.OID_DISCHARGE,
    } <= systems
    assert any(s.startswith("urn:oid:") for s in systems)
    sizes = [sum(len(i["concept"]) for i in r["compose"]["include"]) for r in rs]
    assert min(sizes) < 20 and max(sizes) > 1000 and 60 <= statistics.median(sizes) <= 400
    codes = {c["code"] for r in rs for i in r["compose"]["include"] for c in i["concept"]}
    assert "21 ... 29" in codes
    assert any("\u00a0" in r["title"] for r in groups["condition_grouper"])
    # drift: the same RS grouper url changes content between releases, but not completely
    by_url: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for resource in rs:
        by_url[resource["url"]].append(resource)
    changed = added = removed = 0
    for versions in by_url.values():
        versions.sort(key=lambda r: r["version"])
        for old, new in itertools.pairwise(versions):
            old_codes = {(i["system"], c["code"]) for i in old["compose"]["include"] for c in i["concept"]}
            new_codes = {(i["system"], c["code"]) for i in new["compose"]["include"] for c in i["concept"]}
            changed += old_codes != new_codes
            added += bool(new_codes - old_codes)
            removed += bool(old_codes - new_codes)
            assert len(old_codes & new_codes) >= 0.5 * len(old_codes)
    assert changed > 100 and added > 50 and removed > 50
    # conditions appear in later releases and a few are dropped
    releases = [
        {r["url"] for r in groups["condition_grouper"] if r["version"] == v}
        for v in ("1.0.0", "2.0.0", "3.0.0")
    ]
    assert releases[1] - releases[0] and releases[2] - releases[1]


def test_configurations_are_realistic() -> None:
    spec = SyntheticSpec(jurisdictions=60, configurations_per_jurisdiction=50)
    valuesets = synthetic.generate_valuesets(spec)
    configurations = synthetic.generate_configurations(spec, valuesets)
    assert len(configurations) == 60 * 50
    ids = [c["id"] for c in configurations]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids)
    jurisdictions = list(
        dict.fromkeys(
            c["jurisdiction_id"]
            for c in configurations
            if c["jurisdiction_id"] != synthetic.UNKNOWN_JURISDICTION
        )
    )
    assert jurisdictions[:3] == ["AL", "AK", "AZ"]
    assert len(jurisdictions) == 60 and jurisdictions[56] == synthetic.jurisdiction_ids(57)[56]
    assert len(jurisdictions[56]) > 2
    rs = {(r["url"], r["version"]) for r in valuesets if classify.classify(r) == "reporting_spec_grouper"}
    bad = [
        c
        for c in configurations
        if not c["is_active"]
        or (c["child_grouper_url"], c["child_grouper_version"]) not in rs
        or c["jurisdiction_id"] == synthetic.UNKNOWN_JURISDICTION
    ]
    assert 0 < len(bad) <= 0.02 * len(configurations)
    assert any(not c["is_active"] for c in bad)
    assert any(c["child_grouper_version"] == synthetic.MISSING_VERSION for c in bad)
    fields = {
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
    }
    assert all(set(c) == fields for c in configurations)
    assert sum(c["display_name_override"] is None for c in configurations) > 0.7 * len(ids)
    assert any(c["loinc_codes"] for c in configurations)
    assert all(c["updated_at"] >= c["created_at"] for c in configurations)


def test_production_scale_is_fast(tmp_path: Path) -> None:
    import time

    started = time.monotonic()
    summary = synthetic.generate(tmp_path, SyntheticSpec(jurisdictions=51))
    assert time.monotonic() - started < 60
    assert summary.counts["configurations"] == 51 * 255
    assert 700 <= summary.counts["reporting_spec_grouper"] <= 900


# --- against the real sample ------------------------------------------------------------------


def _real(name: str) -> Any:
    path = SHARED_SAMPLE / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return json.loads(path.read_text(encoding="utf-8"))


def test_synthetic_has_the_shape_of_real_condition_groupers(valuesets: list[dict[str, Any]]) -> None:
    real = _real("condition_grouper_3.0.0.json")
    ours = [r for r in valuesets if classify.classify(r) == "condition_grouper"]
    assert real["metadata"] == {"category": "condition_grouper_3.0.0"}
    assert {frozenset(r) for r in real["valuesets"]} == {frozenset(r) for r in ours}
    assert {frozenset(r["meta"]) for r in real["valuesets"]} == {frozenset(r["meta"]) for r in ours}
    assert {json.dumps(r["useContext"], sort_keys=True) for r in real["valuesets"]} == {
        json.dumps(r["useContext"], sort_keys=True) for r in ours
    }
    assert {r["meta"]["profile"][0] for r in real["valuesets"]} == {r["meta"]["profile"][0] for r in ours}
    real_refs = {
        ref.split("rs-grouper-")[0]
        for r in real["valuesets"]
        for i in r["compose"]["include"]
        for ref in i["valueSet"]
        if "rs-grouper" in ref
    }
    our_refs = {
        ref.split("rs-grouper-")[0]
        for r in ours
        for i in r["compose"]["include"]
        for ref in i["valueSet"]
        if "rs-grouper" in ref
    }
    assert real_refs == our_refs


def test_synthetic_has_the_shape_of_real_rs_groupers(valuesets: list[dict[str, Any]]) -> None:
    real = _real("rs-groupers-covid.json")
    ours = [r for r in valuesets if classify.classify(r) == "reporting_spec_grouper"]
    assert {frozenset(r) for r in real} == {frozenset(r) for r in ours}
    assert {json.dumps(r["meta"]["profile"]) for r in real} == {
        json.dumps(r["meta"]["profile"]) for r in ours
    }
    strip = [{k: v for k, v in c.items() if k != "valueCodeableConcept"} for c in real[0]["useContext"]]
    assert strip == [
        {k: v for k, v in c.items() if k != "valueCodeableConcept"} for c in ours[0]["useContext"]
    ]
    real_systems = {i["system"] for r in real for i in r["compose"]["include"]}
    our_systems = {i["system"] for r in ours for i in r["compose"]["include"]}
    assert real_systems <= our_systems
    assert {frozenset(c) for r in real for i in r["compose"]["include"] for c in i["concept"]} == {
        frozenset(c) for r in ours for i in r["compose"]["include"] for c in i["concept"]
    }
    real_versions = {r["version"] for r in real}
    assert real_versions <= {r["version"] for r in ours}
