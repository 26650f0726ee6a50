"""Which category a TES ValueSet belongs to, and whether it is a valid FHIR R4 ValueSet.

Rules (in order):
1. ``meta.profile`` containing ``us-ph-triggering-valueset`` → ignored (``None``);
2. ``vsm-reportingspecificationgroupervalueset`` → ``reporting_spec_grouper``;
3. ``vsm-conditiongroupervalueset`` → ``condition_grouper``;
4. a ``useContext`` coding ``additional-context-grouper``, or no grouper profile at all →
   ``additional_context_grouper``.

Validation uses the ``fhir.resources`` R4B model (ValueSet is identical in R4 and R4B) plus the
two fields every downstream step keys on: ``url`` and ``version``. The model costs ~50 µs per
concept, and TES holds ~200,000 concepts per fetch, so plain concepts — exactly ``{code,
display}``, both non-empty strings, the code matching the FHIR ``code`` pattern — are checked
here with the same rules and removed before the rest of the resource goes through the model;
any other concept shape is validated by the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

TRIGGERING = "us-ph-triggering-valueset"
RS_PROFILE = "vsm-reportingspecificationgroupervalueset"
CONDITION_PROFILE = "vsm-conditiongroupervalueset"
ADDITIONAL_CONTEXT_CODE = "additional-context-grouper"

CONDITION_GROUPER = "condition_grouper"
REPORTING_SPEC_GROUPER = "reporting_spec_grouper"
ADDITIONAL_CONTEXT_GROUPER = "additional_context_grouper"


def _profiles(resource: Mapping[str, Any]) -> list[str]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, Mapping) else None
    if not isinstance(profiles, list):
        return []
    return [item for item in profiles if isinstance(item, str)]


def _use_context_codes(resource: Mapping[str, Any]) -> list[str]:
    codes: list[str] = []
    contexts = resource.get("useContext")
    if not isinstance(contexts, list):
        return codes
    for context in contexts:
        value = context.get("valueCodeableConcept") if isinstance(context, Mapping) else None
        codings = value.get("coding") if isinstance(value, Mapping) else None
        if isinstance(codings, list):
            codes.extend(str(coding.get("code")) for coding in codings if isinstance(coding, Mapping))
    return codes


def classify(resource: Mapping[str, Any]) -> str | None:
    """The category of a ValueSet, or None for triggering value sets (ignored)."""
    profiles = _profiles(resource)
    if any(TRIGGERING in profile for profile in profiles):
        return None
    if any(RS_PROFILE in profile for profile in profiles):
        return REPORTING_SPEC_GROUPER
    if any(CONDITION_PROFILE in profile for profile in profiles):
        return CONDITION_GROUPER
    return ADDITIONAL_CONTEXT_GROUPER


def is_additional_context(resource: Mapping[str, Any]) -> bool:
    """True when a useContext coding says ``additional-context-grouper``."""
    return ADDITIONAL_CONTEXT_CODE in _use_context_codes(resource)


def validate(resource: Any) -> str | None:
    """None when ``resource`` is a valid FHIR R4 ValueSet with url and version; else why not."""
    if not isinstance(resource, Mapping):
        return f"not a JSON object but {type(resource).__name__}"
    if resource.get("resourceType") != "ValueSet":
        return f"resourceType is {resource.get('resourceType')!r}, not 'ValueSet'"
    for key in ("url", "version"):
        value = resource.get(key)
        if not isinstance(value, str) or not value.strip():
            return f"missing {key}"
    from fhir.resources.R4B.valueset import ValueSet
    from pydantic import ValidationError

    try:
        ValueSet.model_validate(_without_plain_concepts(resource))
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = str(first.get("msg", "invalid")).splitlines()[0]
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"invalid FHIR ValueSet at {where or '(root)'}: {message}{more}"
    except (ValueError, TypeError) as exc:
        return f"invalid FHIR ValueSet: {str(exc).splitlines()[0] if str(exc) else exc!r}"
    return None


# FHIR R4 `code`: no leading/trailing whitespace, single whitespace between tokens.
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")


def _plain_concept(concept: Any) -> bool:
    if type(concept) is not dict or len(concept) != 2:
        return False
    code, display = concept.get("code"), concept.get("display")
    return (
        type(code) is str
        and type(display) is str
        and display.strip() != ""
        and _CODE.fullmatch(code) is not None
    )


def _without_plain_concepts(resource: Mapping[str, Any]) -> dict[str, Any]:
    """``resource`` with include.concept lists dropped where every concept is plain."""
    copy = dict(resource)
    compose = copy.get("compose")
    includes = compose.get("include") if isinstance(compose, Mapping) else None
    if not isinstance(includes, list):
        return copy
    trimmed = []
    for include in includes:
        concepts = include.get("concept") if isinstance(include, Mapping) else None
        if isinstance(concepts, list) and concepts and all(map(_plain_concept, concepts)):
            include = {key: value for key, value in include.items() if key != "concept"}
        trimmed.append(include)
    copy["compose"] = {**compose, "include": trimmed}
    return copy
