"""Classification and validation of TES ValueSets, on hand-made cases and the real sample."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loaders.tes import classify
from loaders.tes.fetch import sort_valuesets
from refinery import synthetic
from tests.conftest import SHARED_SAMPLE


def _vs(profiles: list[str] | None = None, context: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ValueSet",
        "url": "http://x/ValueSet/a",
        "version": "1",
        "status": "active",
    }
    if profiles is not None:
        resource["meta"] = {"profile": profiles}
    if context is not None:
        resource["useContext"] = [
            {
                "code": {"system": "s", "code": "grouper-type"},
                "valueCodeableConcept": {"coding": [{"code": context}]},
            }
        ]
    return resource


@pytest.mark.parametrize(
    ("profiles", "context", "expected"),
    [
        ([synthetic.TRIGGERING_PROFILE], None, None),
        ([synthetic.RS_PROFILE, synthetic.TRIGGERING_PROFILE], None, None),
        ([synthetic.RS_PROFILE, *synthetic.CRMI_PROFILES], None, "reporting_spec_grouper"),
        ([synthetic.CONDITION_PROFILE], None, "condition_grouper"),
        ([synthetic.CONDITION_PROFILE], "condition-grouper", "condition_grouper"),
        (synthetic.CRMI_PROFILES, "additional-context-grouper", "additional_context_grouper"),
        (None, None, "additional_context_grouper"),
        (["http://example.org/other"], None, "additional_context_grouper"),
    ],
)
def test_rules(profiles: list[str] | None, context: str | None, expected: str | None) -> None:
    resource = _vs(profiles, context)
    assert classify.classify(resource) == expected
    assert classify.is_additional_context(resource) is (context == "additional-context-grouper")


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda r: r.pop("version"), "missing version"),
        (lambda r: r.pop("url"), "missing url"),
        (lambda r: r.update(resourceType="CodeSystem"), "resourceType"),
        (lambda r: r.pop("status"), "status"),
        (lambda r: r.update(compose={"include": [{"concept": "x"}]}), "compose.include.0.concept"),
        (
            lambda r: r.update(compose={"include": [{"concept": [{"code": " 1", "display": "d"}]}]}),
            "compose.include.0.concept.0.code",
        ),
        (
            lambda r: r.update(
                compose={"include": [{"concept": [{"code": "1", "display": "d"}, {"code": 2}]}]}
            ),
            "compose.include.0.concept.1.code",
        ),
        (lambda r: r.update(unknownField=1), "unknownField"),
    ],
)
def test_validation_reports_the_problem(mutate: Any, fragment: str) -> None:
    resource = _vs([synthetic.CONDITION_PROFILE])
    assert classify.validate(resource) is None
    mutate(resource)
    reason = classify.validate(resource)
    assert reason is not None and fragment in reason and "\n" not in reason


def test_plain_concepts_are_valid_including_spaced_codes() -> None:
    resource = _vs([synthetic.RS_PROFILE])
    resource["compose"] = {
        "include": [
            {
                "system": synthetic.OID_DISCHARGE,
                "concept": [
                    {"code": "21 ... 29", "display": "Expired to be defined at state level"},
                    {"code": "20", "display": "Expired (i.e. dead)", "designation": [{"value": "x"}]},
                ],
            }
        ]
    }
    assert classify.validate(resource) is None
    assert classify.validate("not an object") is not None


def test_sort_ignores_triggering_and_separates_invalid() -> None:
    good = _vs([synthetic.RS_PROFILE])
    bad = {**_vs([synthetic.RS_PROFILE]), "url": "http://x/ValueSet/b", "status": 5}
    trigger = _vs([synthetic.TRIGGERING_PROFILE])
    result = sort_valuesets([good, bad, trigger])
    assert result.ignored == 1
    assert result.groups == {("reporting_spec_grouper", "1"): [good]}
    assert [(r.url, r.category) for r in result.invalid] == [
        ("http://x/ValueSet/b", "reporting_spec_grouper")
    ]


def _sample(name: str) -> Any:
    path = SHARED_SAMPLE / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("release", ["1.0.0", "2.0.0", "3.0.0"])
def test_real_condition_groupers(release: str) -> None:
    document = _sample(f"condition_grouper_{release}.json")
    resources = document["valuesets"]
    assert len(resources) in (201, 218, 235)
    assert {classify.classify(r) for r in resources} == {"condition_grouper"}
    assert [classify.validate(r) for r in resources] == [None] * len(resources)
    result = sort_valuesets(resources)
    assert list(result.groups) == [("condition_grouper", release)]
    assert not result.invalid and result.ignored == 0


def test_real_rs_groupers() -> None:
    resources = _sample("rs-groupers-covid.json")
    assert [classify.classify(r) for r in resources] == ["reporting_spec_grouper"] * 2
    assert [classify.validate(r) for r in resources] == [None, None]
    # the fast concept check agrees with the full fhir.resources model on real data
    from fhir.resources.R4B.valueset import ValueSet

    for resource in resources:
        ValueSet.model_validate(resource)
