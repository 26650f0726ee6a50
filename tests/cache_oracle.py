"""A plain-Python recomputation of refinement_cache from the raw tables (the test oracle).

Written from the contract (issue 4, rules 1-5; issue 17), independent of the SQL: latest
content per (url, version), classification, codes of every system (compose and expansion),
references split on the last `|`, condition grouper codes = union of loaded RS children (and,
with include_additional_context, of its additional context children), configurations counted by
rule 4, ties by updated_at then id, additions merged, exclusions applied to both (an exclusion
beats an addition), and code_system_sets built from the final codes and the displays TES gives.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from loaders.tes import classify

REPO = Path(__file__).resolve().parent.parent
ADDED = {"loinc_codes": "loinc", "snomed_codes": "snomed", "icd10_codes": "icd10", "rxnorm_codes": "rxnorm"}


@dataclass(frozen=True)
class CacheRow:
    """A cache row in its documented order: the parents' codes sorted bytewise, then the added
    codes the parents lack, sorted bytewise (per system in codes_by_system, overall in
    aggregated_codes)."""

    configuration_id: int
    codes_by_system: dict[str, list[str]]
    aggregated_codes: list[str]
    code_system_sets: dict[str, list[dict[str, str]]]


SET_KEYS = ("loinc", "snomed", "rxnorm", "icd10", "cvx")


def _ordered(base: set[str], added: set[str]) -> list[str]:
    return sorted(base) + sorted(added - base)


def _system_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    with (REPO / "seeds" / "code_systems.csv").open() as handle:
        for row in csv.DictReader(handle):
            keys[row["system_url"]] = row["short_name"]
            keys[f"urn:oid:{row['oid']}"] = row["short_name"]
    return keys


def _oids() -> dict[str, str]:
    """short_name -> OID, from the code_systems seed."""
    with (REPO / "seeds" / "code_systems.csv").open() as handle:
        return {row["short_name"]: row["oid"] for row in csv.DictReader(handle)}


def _displays(resource: dict[str, Any], keys: dict[str, str]) -> dict[tuple[str, str], str]:
    """The display one ValueSet gives each code: trimmed, non-empty, the first bytewise."""
    found: dict[tuple[str, str], str] = {}

    def note(system: str, item: dict[str, Any]) -> None:
        display = (item.get("display") or "").strip()
        if item.get("code") and display:
            key = (keys.get(system, system), item["code"])
            if key not in found or display.encode() < found[key].encode():
                found[key] = display

    for include in (resource.get("compose") or {}).get("include") or []:
        for concept in include.get("concept") or []:
            note(include.get("system") or "urn:unknown-system", concept)
    stack = list((resource.get("expansion") or {}).get("contains") or [])
    while stack:
        item = stack.pop()
        stack.extend(item.get("contains") or [])
        note(item.get("system") or "urn:unknown-system", item)
    return found


def _excluded(entries: list[str] | None, keys: dict[str, str]) -> tuple[set[str], set[tuple[str, str]]]:
    """(bare codes, (system key, code) pairs) of a configuration's excluded_codes."""
    bare: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    short_names = set(keys.values())
    for entry in entries or []:
        if "|" not in entry:
            bare.add(entry.strip())
            continue
        system, _, code = entry.partition("|")
        system = system.strip()
        pairs.add((system if system in short_names else keys.get(system, system), code.strip()))
    return bare, pairs


def _jurisdictions() -> set[str]:
    with (REPO / "seeds" / "jurisdictions.csv").open() as handle:
        return {row["routing_code"] for row in csv.DictReader(handle)}


def _concepts(resource: dict[str, Any], keys: dict[str, str]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for include in (resource.get("compose") or {}).get("include") or []:
        system = include.get("system") or "urn:unknown-system"
        for concept in include.get("concept") or []:
            if concept.get("code"):
                found.add((keys.get(system, system), concept["code"]))
    stack = list((resource.get("expansion") or {}).get("contains") or [])
    while stack:
        item = stack.pop()
        stack.extend(item.get("contains") or [])
        system = item.get("system") or "urn:unknown-system"
        if item.get("code"):
            found.add((keys.get(system, system), item["code"]))
    return found


def _snomed(resource: dict[str, Any]) -> str | None:
    for context in resource.get("useContext") or []:
        if (context.get("code") or {}).get("code") != "focus":
            continue
        for coding in (context.get("valueCodeableConcept") or {}).get("coding") or []:
            if coding.get("system") == "http://snomed.info/sct":
                return coding.get("code")
    url = resource["url"]
    marker = url.rfind("rs-grouper-")
    return url[marker + len("rs-grouper-") :] or None if marker >= 0 else None


def expected_cache(
    conn: psycopg.Connection, *, include_additional_context: bool = False
) -> dict[tuple[str, str], CacheRow]:
    """The refinement_cache the raw tables call for, keyed by (snomed_code, jurisdiction_id);
    include_additional_context: the dbt var include_additional_context_codes."""
    keys = _system_keys()
    oids = _oids()
    rows = conn.execute(
        "select distinct on (canonical_url, version) canonical_url, version, resource, load_id, "
        "valueset_id from raw.tes_valuesets "
        "order by canonical_url, version, last_seen_load_id desc, valueset_id desc"
    ).fetchall()
    rs: dict[tuple[str, str], tuple[str | None, set[tuple[str, str]]]] = {}
    context: dict[tuple[str, str], set[tuple[str, str]]] = {}
    conditions: dict[tuple[str, str], list[tuple[str, str]]] = {}
    # per code, the display of the most recently loaded grouper giving one (then the highest
    # valueset_id; one ValueSet gives a code one display, its first bytewise)
    ranked: dict[tuple[str, str], tuple[int, int, str]] = {}
    for url, version, resource, load_id, valueset_id in rows:
        category = classify.classify(resource)
        if category in (
            classify.REPORTING_SPEC_GROUPER,
            classify.CONDITION_GROUPER,
            classify.ADDITIONAL_CONTEXT_GROUPER,
        ):
            for code_key, display in _displays(resource, keys).items():
                rank = (load_id, valueset_id, display)
                if code_key not in ranked or rank > ranked[code_key]:
                    ranked[code_key] = rank
        if category == classify.ADDITIONAL_CONTEXT_GROUPER:
            context[(url, version)] = _concepts(resource, keys)
        if category == classify.REPORTING_SPEC_GROUPER:
            rs[(url, version)] = (_snomed(resource), _concepts(resource, keys))
        elif category == classify.CONDITION_GROUPER:
            refs = []
            for include in (resource.get("compose") or {}).get("include") or []:
                for reference in include.get("valueSet") or []:
                    if "|" in reference:
                        child_url, _, child_version = reference.rpartition("|")
                        refs.append((child_url, child_version))
            conditions[(url, version)] = refs
    condition_codes: dict[tuple[str, str], set[tuple[str, str]]] = {}
    parents: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for parent, refs in conditions.items():
        codes: set[tuple[str, str]] = set()
        for child in refs:
            if child in rs:
                codes |= rs[child][1]
                parents.setdefault(child, []).append(parent)
            elif include_additional_context and child in context:
                codes |= context[child]
        condition_codes[parent] = codes

    jurisdictions = _jurisdictions()
    winners: dict[tuple[str, str], tuple[Any, int, dict[str, Any]]] = {}
    configurations = conn.execute(
        "select id, jurisdiction_id, child_grouper_url, child_grouper_version, is_active, "
        "updated_at, excluded_codes, loinc_codes, snomed_codes, icd10_codes, rxnorm_codes "
        "from raw.configurations"
    ).fetchall()
    for config_id, jurisdiction, url, version, active, updated_at, excluded, *added in configurations:
        child = (url, version)
        jurisdiction = jurisdiction.strip()
        if not active or jurisdiction not in jurisdictions or child not in rs:
            continue
        snomed = rs[child][0]
        if snomed is None or not parents.get(child):
            continue
        key = (snomed, jurisdiction)
        record = {
            "child": child,
            "added": dict(zip(ADDED.values(), added, strict=True)),
            "excluded": _excluded(excluded, keys),
        }
        if key not in winners or (updated_at, config_id) > winners[key][:2]:
            winners[key] = (updated_at, config_id, record)

    expected: dict[tuple[str, str], CacheRow] = {}
    for key, (_, config_id, record) in winners.items():
        base: set[tuple[str, str]] = set()
        for parent in parents[record["child"]]:
            base |= condition_codes[parent]
        added: set[tuple[str, str]] = set()
        for system, codes in record["added"].items():
            added |= {(system, code.strip()) for code in codes or [] if code and code.strip()}
        bare, pairs = record["excluded"]
        base = {(s, c) for s, c in base if c not in bare and (s, c) not in pairs}
        added = {(s, c) for s, c in added if c not in bare and (s, c) not in pairs}
        systems = {system for system, _ in base | added}
        by_system = {
            system: _ordered({c for s, c in base if s == system}, {c for s, c in added if s == system})
            for system in systems
        }
        everything = _ordered({c for _, c in base}, {c for _, c in added})
        sets: dict[str, list[dict[str, str]]] = {set_key: [] for set_key in (*SET_KEYS, "other")}
        # per key: the parents' codes by (system, code) bytewise, then the added codes they lack
        bytewise = lambda pair: (pair[0].encode(), pair[1].encode())  # noqa: E731
        for system, code in sorted(base, key=bytewise) + sorted(added - base, key=bytewise):
            set_key = system if system in SET_KEYS else "other"
            if system in oids:
                set_system = oids[system]
            elif system.startswith("urn:oid:"):
                set_system = system[len("urn:oid:") :]
            else:
                set_system = system
            display = ranked[(system, code)][2] if (system, code) in ranked else ""
            sets[set_key].append({"code": code, "display": display, "system": set_system})
        expected[key] = CacheRow(config_id, by_system, everything, sets)
    return expected


def actual_cache(conn: psycopg.Connection, schema: str = "refiner") -> dict[tuple[str, str], dict[str, Any]]:
    """refinement_cache as built, keyed like expected_cache."""
    rows = conn.execute(
        f"select snomed_code, jurisdiction_id, aggregated_codes, codes_by_system, source_details, "
        f"content_sha256, updated_at, code_system_sets from {schema}.refinement_cache"
    ).fetchall()
    return {
        (snomed, jurisdiction): {
            "aggregated_codes": aggregated,
            "codes_by_system": by_system,
            "source_details": details,
            "content_sha256": sha,
            "updated_at": updated_at,
            "code_system_sets": sets,
        }
        for snomed, jurisdiction, aggregated, by_system, details, sha, updated_at, sets in rows
    }


def differences(
    expected: dict[tuple[str, str], CacheRow], actual: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    """Human-readable differences between the oracle and the table (empty when equal)."""
    problems = [f"missing key {key}" for key in expected.keys() - actual.keys()]
    problems += [f"unexpected key {key}" for key in actual.keys() - expected.keys()]
    for key in expected.keys() & actual.keys():
        want, got = expected[key], actual[key]
        if got["codes_by_system"] != want.codes_by_system:
            problems.append(f"{key}: codes_by_system differs")
        if list(got["aggregated_codes"]) != want.aggregated_codes:
            problems.append(f"{key}: aggregated_codes differs")
        if got["code_system_sets"] != want.code_system_sets:
            problems.append(f"{key}: code_system_sets differs")
        if int(got["source_details"]["configuration_id"]) != want.configuration_id:
            problems.append(
                f"{key}: configuration {got['source_details']['configuration_id']} "
                f"instead of {want.configuration_id}"
            )
    return problems
