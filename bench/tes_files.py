"""Read TES ValueSet files and configuration snapshots the way the original seeder did.

Kept separate from the project's loaders on purpose: the trigger design is measured with its own
(row-by-row) ingestion, and must not get faster or slower when the project's loaders change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
# The four code systems the original kept (column name -> system url).
ORIGINAL_SYSTEMS = {
    "loinc_codes": LOINC,
    "snomed_codes": SNOMED,
    "icd10_codes": "http://hl7.org/fhir/sid/icd-10-cm",
    "rxnorm_codes": "http://www.nlm.nih.gov/research/umls/rxnorm",
}
RS_PROFILE = "vsm-reportingspecificationgroupervalueset"
CONDITION_PROFILE = "vsm-conditiongroupervalueset"
TRIGGERING_PROFILE = "us-ph-triggering-valueset"


@dataclass(frozen=True)
class Grouper:
    """One condition or RS grouper as the original tables held it (four code systems)."""

    kind: str  # "condition_grouper" | "reporting_spec_grouper"
    canonical_url: str
    version: str
    display_name: str
    snomed_code: str | None
    codes: dict[str, list[str]]
    children: tuple[tuple[str, str], ...]  # (url, version) referenced by compose.include.valueSet


def tes_files(paths: Iterable[Path]) -> list[Path]:
    """Every `*.json` under the given files/folders except `manifest.json`, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.json")) if p.name != "manifest.json")
        elif path.name != "manifest.json":
            found.append(path)
    return found


def _valuesets(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, list):
        return [item for item in document if isinstance(item, dict)]
    if isinstance(document, dict):
        if "valuesets" in document:
            return list(document["valuesets"])
        if document.get("resourceType") == "Bundle":
            return [entry["resource"] for entry in document.get("entry", []) if "resource" in entry]
        if document.get("resourceType") == "ValueSet":
            return [document]
    return []


def read_valuesets(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for file in tes_files(paths):
        yield from _valuesets(json.loads(file.read_text(encoding="utf-8")))


def classify(valueset: dict[str, Any]) -> str:
    profiles = " ".join((valueset.get("meta") or {}).get("profile") or [])
    if TRIGGERING_PROFILE in profiles:
        return "triggering"
    if RS_PROFILE in profiles:
        return "reporting_spec_grouper"
    if CONDITION_PROFILE in profiles:
        return "condition_grouper"
    return "additional_context_grouper"


def focus_snomed(valueset: dict[str, Any]) -> str | None:
    """The condition's SNOMED code: useContext focus, else the url's `rs-grouper-` suffix."""
    for context in valueset.get("useContext") or []:
        if (context.get("code") or {}).get("code") != "focus":
            continue
        for coding in (context.get("valueCodeableConcept") or {}).get("coding") or []:
            if coding.get("system") == SNOMED and coding.get("code"):
                return str(coding["code"])
    url = str(valueset.get("url", ""))
    if "rs-grouper-" in url:
        return url.rsplit("rs-grouper-", 1)[1]
    return None


def to_grouper(valueset: dict[str, Any]) -> Grouper | None:
    """The original seeder's record for a ValueSet, or None for kinds it ignored."""
    kind = classify(valueset)
    if kind not in ("condition_grouper", "reporting_spec_grouper"):
        return None
    includes = (valueset.get("compose") or {}).get("include") or []
    codes: dict[str, list[str]] = {column: [] for column in ORIGINAL_SYSTEMS}
    children: list[tuple[str, str]] = []
    for include in includes:
        for reference in include.get("valueSet") or []:
            if "|" in reference:
                url, version = reference.rsplit("|", 1)
                children.append((url, version))
        if "valueSet" in include:
            continue
        for column, system in ORIGINAL_SYSTEMS.items():
            if include.get("system") == system:
                codes[column].extend(c["code"] for c in include.get("concept") or [])
    return Grouper(
        kind=kind,
        canonical_url=str(valueset["url"]),
        version=str(valueset["version"]),
        display_name=str(valueset.get("name") or valueset.get("title") or ""),
        snomed_code=focus_snomed(valueset) if kind == "reporting_spec_grouper" else None,
        codes=codes,
        children=tuple(children),
    )


def read_groupers(paths: Iterable[Path]) -> list[Grouper]:
    groupers = [to_grouper(vs) for vs in read_valuesets(paths)]
    return [g for g in groupers if g is not None]


def read_configurations(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "configurations" in data:
        data = data["configurations"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of configurations")
    return data


def write_configurations(path: Path, configurations: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(configurations), encoding="utf-8")
