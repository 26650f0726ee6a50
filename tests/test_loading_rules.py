"""The two places that apply each loading rule agree (docs/loading-rules.md says why there are two).

Classification: `loaders.tes.classify.classify` (fetch, Python) and the `grouper_type` of
`stg_tes__valuesets` (dbt, SQL) give the same category to every ValueSet, and drop the same
triggering ones. Validation: every ValueSet that `classify.validate` (fhir.resources, at fetch)
accepts, the loader's own check (`loaders.land.reader.check_valueset`) accepts too.
Both on the real TES sample (skipped when absent) and on the synthetic data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from loaders.land.reader import check_valueset
from loaders.land.tes import load_tes
from loaders.tes import classify
from refinery import dbt, synthetic
from refinery.connection import DatabaseSettings
from tests.conftest import SHARED_SAMPLE, create_database, drop_database

SPEC = synthetic.SyntheticSpec(seed=5, jurisdictions=2, conditions=20, configurations_per_jurisdiction=5)

# Valid FHIR ValueSets on the edges of the rules (several profiles, triggering with another
# grouper profile, an unknown profile, the additional-context useContext, no meta at all).
USAGE_CONTEXT_TYPE = "http://terminology.hl7.org/CodeSystem/usage-context-type"
EDGE_PROFILES: dict[str, list[str] | None] = {
    "rs-and-triggering": [synthetic.RS_PROFILE, synthetic.TRIGGERING_PROFILE],
    "condition-and-rs": [synthetic.CONDITION_PROFILE, synthetic.RS_PROFILE],
    "rs-with-crmi": [*synthetic.CRMI_PROFILES, synthetic.RS_PROFILE],
    "crmi-only": list(synthetic.CRMI_PROFILES),
    "unknown-profile": ["http://example.org/StructureDefinition/other"],
    "no-meta": None,
}


def _edge_cases() -> list[dict[str, Any]]:
    cases = []
    for name, profiles in EDGE_PROFILES.items():
        resource: dict[str, Any] = {
            "resourceType": "ValueSet",
            "url": f"http://example.org/ValueSet/edge-{name}",
            "version": "1",
            "status": "active",
            "compose": {"include": [{"system": "http://snomed.info/sct", "concept": [{"code": "1"}]}]},
        }
        if profiles is not None:
            resource["meta"] = {"profile": profiles}
        if name == "crmi-only":
            resource["useContext"] = [
                {
                    "code": {"system": USAGE_CONTEXT_TYPE, "code": "focus"},
                    "valueCodeableConcept": {"coding": [{"code": "additional-context-grouper"}]},
                }
            ]
        cases.append(resource)
    return cases


def _sample_valuesets() -> list[dict[str, Any]]:
    if not SHARED_SAMPLE.is_dir():
        return []
    found: list[dict[str, Any]] = []
    for path in sorted(SHARED_SAMPLE.glob("*.json")):
        document = json.loads(path.read_text())
        if isinstance(document, dict) and "valuesets" in document:
            found += document["valuesets"]
        elif isinstance(document, dict) and document.get("resourceType") == "Bundle":
            found += [entry["resource"] for entry in document.get("entry", [])]
        elif isinstance(document, list):
            found += document
        else:
            found.append(document)
    return found


DATASETS = ["synthetic", "real sample"]


def _valuesets(dataset: str) -> list[dict[str, Any]]:
    if dataset == "synthetic":
        return synthetic.generate_valuesets(SPEC) + _edge_cases()
    found = _sample_valuesets()
    if not found:
        pytest.skip(f"real TES sample not present at {SHARED_SAMPLE}")
    return found


@pytest.fixture(scope="module")
def staged(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each dataset loaded (triggering ValueSets included) and `stg_tes__valuesets` built over it."""
    found: dict[str, Any] = {}
    folder = tmp_path_factory.mktemp("loading-rules")
    for dataset in DATASETS:
        resources = synthetic.generate_valuesets(SPEC) + _edge_cases() if dataset == "synthetic" else []
        if dataset == "real sample":
            resources = _sample_valuesets()
        if not resources:
            continue
        settings = create_database(server, "refinery_rules")
        try:
            path = folder / f"{dataset.replace(' ', '_')}.json"
            path.write_text(json.dumps(resources))
            load_tes([path], settings)
            outcome = dbt.run(["run", "--select", "+stg_tes__valuesets"], settings)
            assert outcome.exit_code == 0
            with psycopg.connect(settings.conninfo()) as conn:
                (schema,) = conn.execute(
                    "select table_schema from information_schema.views"
                    " where table_name = 'stg_tes__valuesets'"
                ).fetchone()
                rows = conn.execute(
                    f'select canonical_url, version, grouper_type from "{schema}".stg_tes__valuesets'
                ).fetchall()
            found[dataset] = {(url, version): grouper for url, version, grouper in rows}
        finally:
            drop_database(server, settings)
    yield found


@pytest.mark.parametrize("dataset", DATASETS)
def test_python_and_sql_classify_every_valueset_alike(dataset: str, staged: dict[str, Any]) -> None:
    resources = _valuesets(dataset)
    python = {(r["url"], r["version"]): classify.classify(r) for r in resources}
    sql = staged[dataset]
    kept = {key: category for key, category in python.items() if category is not None}
    assert sql == kept
    # the data exercises every rule: each category, and triggering ValueSets dropped by both
    if dataset == "synthetic":
        assert set(kept.values()) == set(classify_categories())
        assert len(python) > len(kept)


def classify_categories() -> tuple[str, ...]:
    return (classify.CONDITION_GROUPER, classify.REPORTING_SPEC_GROUPER, classify.ADDITIONAL_CONTEXT_GROUPER)


@pytest.mark.parametrize("dataset", DATASETS)
def test_what_fetch_validates_the_loader_accepts(dataset: str) -> None:
    resources = _valuesets(dataset)
    valid = [r for r in resources if classify.validate(r) is None]
    assert valid, "the data holds valid ValueSets"
    refused = {(r["url"], r["version"]): check_valueset(r) for r in valid if check_valueset(r) is not None}
    assert refused == {}


# Records the loader refuses for their shape: FHIR validation (fetch) refuses every one too, so
# the loader's check is a subset of what fetch enforces, not another rule.
LOADER_REFUSALS = {
    "no url": lambda r: r.pop("url"),
    "blank version": lambda r: r.update(version=" "),
    "compose not an object": lambda r: r.update(compose=[]),
    "include not a list": lambda r: r.update(compose={"include": {}}),
    "include entry not an object": lambda r: r.update(compose={"include": ["x"]}),
    "system not a string": lambda r: r.update(compose={"include": [{"system": 1}]}),
    "valueSet not a list of strings": lambda r: r.update(compose={"include": [{"valueSet": [1]}]}),
    "concept not a list": lambda r: r.update(compose={"include": [{"concept": {}}]}),
    "concept not an object": lambda r: r.update(compose={"include": [{"concept": ["a"]}]}),
    "empty code": lambda r: r.update(compose={"include": [{"system": "s", "concept": [{"code": ""}]}]}),
    "code not a string": lambda r: r.update(compose={"include": [{"system": "s", "concept": [{"code": 1}]}]}),
    "exclude concept without code": lambda r: r.update(
        compose={"include": [{"system": "s"}], "exclude": [{"system": "s", "concept": [{"display": "d"}]}]}
    ),
}


@pytest.mark.parametrize("case", LOADER_REFUSALS)
def test_every_loader_refusal_is_also_a_fhir_refusal(case: str) -> None:
    resource = _edge_cases()[0]
    assert check_valueset(resource) is None and classify.validate(resource) is None
    LOADER_REFUSALS[case](resource)
    assert check_valueset(resource) is not None
    assert classify.validate(resource) is not None
