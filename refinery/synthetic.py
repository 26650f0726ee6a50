"""A deterministic generator of TES-shaped data and Refiner configurations.

Shaped after the real APHL TES content (three condition grouper releases and two COVID-19 RS
groupers, see ../shared/tes-sample): condition groupers per release (1.0.0, 2.0.0, ...) that
hold no codes, only ``compose.include[].valueSet`` references ``url|version`` to reporting
specification (RS) groupers ``.../ValueSet/rs-grouper-<SNOMED>`` (dated versions such as
20241008) and, from the second release on, to additional context groupers; RS groupers carry a
``useContext`` focus = the condition's SNOMED code and codes in SNOMED, LOINC, ICD-10-CM, RxNorm,
CVX, CPT, HL7 v3 and ``urn:oid:`` systems, with a long tail of sizes and release-to-release
drift; triggering value sets (eRSD) that must be ignored; and configurations for N
jurisdictions, including a few realistic bad ones (at most ~2%).

Everything derives from ``SyntheticSpec``: the same spec gives byte-identical files. Each entity
draws from its own random stream (seeded by a string naming it), so growing one part of the
spec does not reshuffle the rest.
"""

from __future__ import annotations

import json
import math
import os
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loaders.tes import classify, files

BASE = "https://tes.tools.aimsplatform.org/api/fhir"
VALUESET_BASE = f"{BASE}/ValueSet"
ERSD_BASE = "http://ersd.aimsplatform.org/fhir/ValueSet"

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
CPT = "http://www.ama-assn.org/go/cpt"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ACTSTATUS = "http://terminology.hl7.org/CodeSystem/v3-ActStatus"
OID_DISCHARGE = "urn:oid:2.16.840.1.113883.12.112"
OID_STATUS = "urn:oid:2.16.840.1.113883.3.1937.98.5.8"

USAGE_CONTEXT_TYPE = "http://aphl.org/fhir/vsm/CodeSystem/usage-context-type"
HL7_USAGE_CONTEXT_TYPE = "http://terminology.hl7.org/CodeSystem/usage-context-type"
CONDITION_PROFILE = "http://aphl.org/fhir/vsm/StructureDefinition/vsm-conditiongroupervalueset"
RS_PROFILE = "http://aphl.org/fhir/vsm/StructureDefinition/vsm-reportingspecificationgroupervalueset"
TRIGGERING_PROFILE = "http://hl7.org/fhir/us/ecr/StructureDefinition/us-ph-triggering-valueset"
CRMI_PROFILES = [
    "http://hl7.org/fhir/uv/crmi/StructureDefinition/crmi-computablevalueset",
    "http://hl7.org/fhir/uv/crmi/StructureDefinition/crmi-publishablevalueset",
    "http://hl7.org/fhir/uv/crmi/StructureDefinition/crmi-shareablevalueset",
]
EXTENSIONS = [
    {
        "url": "http://hl7.org/fhir/StructureDefinition/valueset-author",
        "valueContactDetail": {"name": "CSTE Author"},
    },
    {
        "url": "http://hl7.org/fhir/StructureDefinition/valueset-steward",
        "valueContactDetail": {"name": "CSTE Steward"},
    },
]

# The 50 states, DC and the five inhabited territories: the first 56 jurisdictions.
US_JURISDICTIONS = [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
    "DC",
    "AS",
    "GU",
    "MP",
    "PR",
    "VI",
]
UNKNOWN_JURISDICTION = "ZZ"
MISSING_VERSION = "20991231"

# Real TES release history for the first three releases; later ones are extrapolated.
_RELEASES = [
    ("1.0.0", "2024-10-08T10:12:44-06:00", "20241008", "2024-10-10T17:02:11.482000+00:00"),
    ("2.0.0", "2025-04-15T08:31:05-06:00", "20250328", "2025-06-04T21:26:59.275000+00:00"),
    ("3.0.0", "2025-09-08T12:52:28-06:00", "20250829", "2025-09-10T20:19:03.939000+00:00"),
]

_CONDITIONS = [
    "Acanthamoeba",
    "Acute Flaccid Myelitis (AFM)",
    "Agricultural Chemicals Fertilizer Poisoning",
    "Alpha-gal Syndrome",
    "Amebiasis",
    "Anaplasmosis",
    "Anencephaly",
    "Angiostrongyliasis",
    "Animal Bite Injury",
    "Anophthalmia",
    "Anthrax",
    "Arboviral Disease",
    "Arsenic Poisoning",
    "Asbestosis",
    "Babesiosis",
    "Botulism",
    "Brucellosis",
    "Burkholderia mallei (Glanders)",
    "Campylobacteriosis",
    "Candida auris",
    "Carbapenem-resistant Enterobacterales (CRE)",
    "Carbon Monoxide Poisoning",
    "Chagas Disease",
    "Chancroid",
    "Chikungunya Virus Disease",
    "Chlamydia trachomatis Infection",
    "Cholera",
    "Ciguatera Fish Poisoning",
    "Coccidioidomycosis",
    "Congenital Syphilis",
    "COVID-19",
    "Creutzfeldt-Jakob Disease",
    "Cronobacter",
    "Cryptosporidiosis",
    "Cyclosporiasis",
    "Cysticercosis",
    "Dengue Virus Infection",
    "Diphtheria",
    "Eastern Equine Encephalitis",
    "Ehrlichiosis",
    "Escherichia coli O157:H7",
    "Free-living Amoeba",
    "Giardiasis",
    "Gonorrhea",
    "Haemophilus influenzae, Invasive",
    "Hansen's Disease (Leprosy)",
    "Hantavirus Pulmonary Syndrome",
    "Hemolytic Uremic Syndrome",
    "Hepatitis A",
    "Hepatitis B, Acute",
    "Hepatitis B, Perinatal",
    "Hepatitis C, Acute",
    "Hepatitis D",
    "Hepatitis E",
    "Histoplasmosis",
    "HIV Infection",
    "Influenza-associated Death",
    "Influenza, Novel",
    "Jamestown Canyon Virus",
    "La Crosse Virus",
    "Lead Poisoning",
    "Legionellosis",
    "Leptospirosis",
    "Listeriosis",
    "Lyme Disease",
    "Malaria",
    "Measles",
    "Melioidosis",
    "Meningococcal Disease",
    "Mercury Poisoning",
    "Monkeypox (Mpox)",
    "Mumps",
    "Nontuberculous Mycobacteria",
    "Pertussis",
    "Pesticide-related Illness",
    "Plague",
    "Poliomyelitis, Paralytic",
    "Powassan Virus",
    "Psittacosis",
    "Q Fever",
    "Rabies, Human",
    "Rabies, Animal",
    "Respiratory Syncytial Virus (RSV)",
    "Ricin Poisoning",
    "Rubella",
    "Rubella, Congenital Syndrome",
    "Salmonellosis",
    "Saxitoxin Poisoning",
    "Severe Acute Respiratory Syndrome (SARS)",
    "Shiga Toxin-producing E. coli (STEC)",
    "Shigellosis",
    "Silicosis",
    "Smallpox",
    "Spotted Fever Rickettsiosis",
    "St. Louis Encephalitis",
    "Streptococcal Toxic Shock Syndrome",
    "Streptococcus pneumoniae, Invasive",
    "Syphilis",
    "Tetanus",
    "Tickborne Relapsing Fever (TBRF)",
    "Toxic Shock Syndrome",
    "Toxoplasmosis",
    "Trichinellosis",
    "Tuberculosis",
    "Tularemia",
    "Typhoid Fever",
    "Typhus Fever",
    "Vancomycin-intermediate Staphylococcus aureus (VISA)",
    "Varicella",
    "Vibriosis",
    "Viral Hemorrhagic Fever",
    "West Nile Virus Disease",
    "Yellow Fever",
    "Yersiniosis",
    "Zika Virus Disease",
]
_QUALIFIERS = [
    "Invasive",
    "Congenital",
    "Drug-resistant",
    "Neonatal",
    "Acute",
    "Chronic",
    "Travel-associated",
    "Outbreak-associated",
    "Perinatal",
    "Severe",
]
_CONTEXT_TOPICS = [
    "Pregnancy",
    "Travel History",
    "Occupation",
    "Vaccination Status",
    "Exposure",
    "Hospitalization",
    "Death",
    "Symptoms",
    "Treatment",
    "Specimen Source",
]
_FINDINGS = [
    "fever",
    "rash",
    "cough",
    "myalgia",
    "lesion",
    "infection",
    "exposure",
    "pneumonia",
    "encephalitis",
    "diarrhea",
    "jaundice",
    "sepsis",
    "paralysis",
]
_SEMANTIC_TAGS = ["finding", "disorder", "organism", "procedure", "substance"]
_SPECIMENS = ["Serum", "Blood", "Urine", "Stool", "Nasopharynx", "Specimen", "CSF", "Isolate"]
_METHODS = [
    "NAA with probe detection",
    "Immunoassay",
    "Culture",
    "Immunofluorescence",
    "Sequencing",
    "Microscopy",
]
_DRUGS = [
    "doxycycline",
    "oseltamivir",
    "ceftriaxone",
    "azithromycin",
    "ribavirin",
    "penicillin G benzathine",
    "rifampin",
    "isoniazid",
    "chloroquine",
    "nirmatrelvir",
]
_INTERPRETATION = [
    ("A", "Abnormal"),
    ("AA", "Critical abnormal"),
    ("DET", "Detected"),
    ("H", "High"),
    ("HH", "Critical high"),
    ("HU", "Significantly high"),
    ("L", "Low"),
    ("LL", "Critical low"),
    ("LU", "Significantly low"),
    ("NEG", "Negative"),
    ("ND", "Not detected"),
    ("POS", "Positive"),
    ("R", "Resistant"),
    ("RR", "Reactive"),
    ("WR", "Weakly reactive"),
]
_DISCHARGE = [
    ("20", "Expired (i.e. dead)"),
    ("21 ... 29", "Expired to be defined at state level, if necessary"),
    ("40", "Expired at home"),
    ("41", "Expired in a medical facility"),
    ("42", "Expired - place unknown"),
]
_ACTCODES = [
    ("ACUTE", "inpatient acute"),
    ("IMP", "inpatient encounter"),
    ("EMER", "emergency"),
    ("OBSENC", "observation encounter"),
    ("NONAC", "inpatient non-acute"),
]
_TRIGGERING = [
    ("dxtc", "Diagnosis_Problem Triggers for Public Health Reporting"),
    ("lotc", "Lab Order Test Triggers for Public Health Reporting"),
    ("lrtc", "Lab Obs Test Name Triggers for Public Health Reporting"),
    ("mrtc", "Medications Triggers for Public Health Reporting"),
    ("ostc", "Organism_Substance Triggers for Public Health Reporting"),
    ("sdtc", "Suspected Disorder Triggers for Public Health Reporting"),
]
_VACCINE_CONDITIONS = (
    "Measles",
    "Mumps",
    "Rubella",
    "Varicella",
    "Pertussis",
    "Diphtheria",
    "Tetanus",
    "Hepatitis",
    "Influenza",
    "COVID",
    "Polio",
    "Meningococcal",
    "Haemophilus",
    "Smallpox",
    "Mpox",
    "Monkeypox",
    "Yellow",
    "Typhoid",
)


@dataclass(frozen=True)
class SyntheticSpec:
    seed: int = 7
    jurisdictions: int = 5  # production scale: 51; large: 500
    releases: int = 3  # condition grouper releases 1.0.0, 2.0.0, 3.0.0 ...
    conditions: int = 220  # condition groupers per release (real: ~200-235)
    configurations_per_jurisdiction: int = 255  # production scale 51 x 255 ~= 13,000
    scale: float = 1.0  # multiplies conditions/RS groupers for the 10x benchmark


@dataclass(frozen=True)
class SyntheticSummary:
    tes_dir: Path  # category files + manifest.json (fetch output format)
    configurations_file: Path  # JSON list of configurations
    counts: dict[str, int]  # see generate()


# --- releases and identifiers --------------------------------------------------------------------


@dataclass(frozen=True)
class _Release:
    index: int
    version: str  # condition / additional context grouper version, e.g. "2.0.0"
    date: str  # ValueSet.date of the condition groupers
    rs_version: str  # dated RS grouper version, e.g. "20250328"
    last_updated: str  # meta.lastUpdated

    @property
    def rs_date(self) -> str:
        day = datetime.strptime(self.rs_version, "%Y%m%d")
        return day.strftime("%Y-%m-%dT09:44:14-07:00")


def _releases(count: int) -> list[_Release]:
    out: list[_Release] = []
    for index in range(count):
        if index < len(_RELEASES):
            version, date, rs_version, updated = _RELEASES[index]
        else:
            base = datetime(2025, 9, 8, 12, 52, 28) + timedelta(days=154 * (index - 2))
            version = f"{index + 1}.0.0"
            date = base.strftime("%Y-%m-%dT%H:%M:%S-06:00")
            rs_version = (base - timedelta(days=10)).strftime("%Y%m%d")
            updated = (base + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000000+00:00")
        out.append(_Release(index, version, date, rs_version, updated))
    return out


def _rng(spec: SyntheticSpec, *names: object) -> random.Random:
    return random.Random(":".join([str(spec.seed), *map(str, names)]))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 7, 6, 8, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]
_VERHOEFF_INV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def _verhoeff(digits: str) -> str:
    check = 0
    for position, digit in enumerate(reversed(digits), start=1):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(digit)]]
    return str(_VERHOEFF_INV[check])


def snomed_code(item: int, extension: bool = False) -> str:
    """A well-formed SNOMED CT concept id (partition 00, or 10 with a namespace; Verhoeff)."""
    body = f"{item}{'1000132' if extension else ''}{'10' if extension else '00'}"
    return body + _verhoeff(body)


def loinc_code(item: int) -> str:
    """A well-formed LOINC code: number, dash, mod-10 check digit."""
    digits = str(item)
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return f"{digits}-{(10 - total % 10) % 10}"


# --- code pools ------------------------------------------------------------------------------------


class _Pools:
    """Deterministic code pools per system: code i of a system is always the same (code, display)."""

    def __init__(self, scale: float) -> None:
        self.size = {
            SNOMED: int(20000 * scale),
            LOINC: int(9000 * scale),
            ICD10CM: int(7000 * scale),
            RXNORM: int(3000 * scale),
            CPT: int(1500 * scale),
            CVX: 220,
        }
        self._cache: dict[str, dict[int, tuple[str, str]]] = {system: {} for system in self.size}

    def pair(self, system: str, item: int) -> tuple[str, str]:
        cache = self._cache[system]
        found = cache.get(item)
        if found is None:
            found = cache[item] = (self._code(system, item), self._display(system, item))
        return found

    def concept(self, system: str, item: int) -> dict[str, str]:
        code, display = self.pair(system, item)
        return {"code": code, "display": display}

    def concepts(self, system: str, items: Sequence[int]) -> list[dict[str, str]]:
        """Fresh concept dicts (callers may mutate them) for ``items`` of ``system``."""
        cache = self._cache[system]
        pair = self.pair
        return [
            {"code": code, "display": display}
            for code, display in (cache.get(item) or pair(system, item) for item in items)
        ]

    @staticmethod
    def _code(system: str, item: int) -> str:
        if system == SNOMED:
            return snomed_code(100000 + item * 37, extension=item % 23 == 0)
        if system == LOINC:
            return loinc_code(10000 + item * 11)
        if system == ICD10CM:
            letter = "ABJRTZ"[item % 6]
            number = 10 + (item // 6) % 90
            suffix = (item // 540) % 100
            return f"{letter}{number:02d}" if suffix == 0 else f"{letter}{number:02d}.{suffix}"
        if system == RXNORM:
            return str(200000 + item * 13)
        if system == CPT:
            return f"{4000 + item % 900}F" if item % 7 == 0 else str(10021 + item * 3)
        if system == CVX:
            return f"{item:02d}" if item < 10 else str(item)
        raise ValueError(system)

    @staticmethod
    def _display(system: str, item: int) -> str:
        condition = _CONDITIONS[item % len(_CONDITIONS)]
        finding = _FINDINGS[item % len(_FINDINGS)]
        if system == SNOMED:
            tag = _SEMANTIC_TAGS[(item // 3) % len(_SEMANTIC_TAGS)]
            return f"{condition} {finding} ({tag})"
        if system == LOINC:
            specimen = _SPECIMENS[item % len(_SPECIMENS)]
            method = _METHODS[(item // 8) % len(_METHODS)]
            return f"{condition} Ag [Presence] in {specimen} by {method}"
        if system == ICD10CM:
            return f"{condition} with {finding}"
        if system == RXNORM:
            drug = _DRUGS[item % len(_DRUGS)]
            return f"{drug} {25 * (1 + item % 20)} MG Oral Tablet"
        if system == CPT:
            return f"Infectious agent detection by nucleic acid; {condition}, {finding}"
        return f"{condition} vaccine"


# Share of a grouper's codes per system (the remainder of the weight goes to SNOMED).
_MIX = [(LOINC, 0.26), (ICD10CM, 0.18), (RXNORM, 0.04), (CPT, 0.03)]


@dataclass
class _Content:
    """Codes of one grouper as ordered item lists per pooled system, plus fixed-list flags."""

    items: dict[str, list[int]] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)  # fixed-list systems included


def _draw(rng: random.Random, pools: _Pools, system: str, count: int) -> list[int]:
    count = min(count, pools.size[system])
    return rng.sample(range(pools.size[system]), count) if count else []


def _initial_content(rng: random.Random, pools: _Pools, size: int, vaccine: bool) -> _Content:
    content = _Content()
    remaining = size
    for system, share in _MIX:
        count = round(size * share * rng.uniform(0.5, 1.5))
        if system == RXNORM and rng.random() < 0.4:
            count = 0
        count = min(count, remaining - 1) if remaining > 1 else 0
        if count > 0:
            content.items[system] = _draw(rng, pools, system, count)
            remaining -= count
    content.items[SNOMED] = _draw(rng, pools, SNOMED, max(remaining, 1))
    if vaccine or rng.random() < 0.08:
        content.items[CVX] = _draw(rng, pools, CVX, rng.randint(1, 12))
    if rng.random() < 0.6:
        content.fixed.append(V3_INTERPRETATION)
    if rng.random() < 0.3:
        content.fixed.append(OID_DISCHARGE)
    if rng.random() < 0.2:
        content.fixed.append(V3_ACTCODE)
    if rng.random() < 0.1:
        content.fixed.extend([OID_STATUS, V3_ACTSTATUS])
    return content


def _drift(rng: random.Random, pools: _Pools, content: _Content) -> _Content:
    """The next release of a grouper: a few codes removed, a few added, most unchanged."""
    if rng.random() < 0.35:
        return content
    items: dict[str, list[int]] = {}
    for system, current in content.items.items():
        kept = [item for item in current if rng.random() >= 0.03]
        if not kept:
            kept = current[:1]
        added_count = int(len(current) * rng.uniform(0.0, 0.08)) + (rng.random() < 0.3)
        present = dict.fromkeys(kept)
        for item in _draw(rng, pools, system, added_count):
            if item not in present:
                present[item] = None
        items[system] = list(present)
    return _Content(items, list(content.fixed))


def _compose(pools: _Pools, content: _Content, rng: random.Random) -> dict[str, Any]:
    include: list[dict[str, Any]] = []
    for system, items in content.items.items():
        include.append({"system": system, "concept": pools.concepts(system, items)})
    fixed = {
        V3_INTERPRETATION: _INTERPRETATION,
        OID_DISCHARGE: _DISCHARGE,
        V3_ACTCODE: _ACTCODES,
        OID_STATUS: [("active", "Active")],
        V3_ACTSTATUS: [("active", "active")],
    }
    for system in content.fixed:
        include.append(
            {
                "system": system,
                "concept": [{"code": code, "display": display} for code, display in fixed[system]],
            }
        )
    rng.shuffle(include)
    return {"include": include}


def _size(rng: random.Random) -> int:
    """Codes in an RS grouper: log-normal, median ~120, a few to thousands."""
    return max(3, min(6000, int(math.exp(rng.gauss(math.log(120), 1.1)))))


# --- the condition catalogue -----------------------------------------------------------------------


@dataclass
class _Condition:
    key: int
    title: str
    url: str
    snomed: list[str]  # one per RS grouper, first is the primary
    first_release: int
    last_release: int  # inclusive
    contexts: list[str] = field(default_factory=list)  # additional context grouper urls
    vaccine: bool = False


def _title(spec: SyntheticSpec, key: int) -> str:
    base = _CONDITIONS[key % len(_CONDITIONS)]
    round_ = key // len(_CONDITIONS)
    if round_ == 0:
        title = base
    elif round_ <= len(_QUALIFIERS):
        title = f"{base}, {_QUALIFIERS[round_ - 1]}"
    else:
        title = f"{base}, Type {round_ - len(_QUALIFIERS) + 1}"
    rng = _rng(spec, "title", key)
    if rng.random() < 0.01:
        # Real titles sometimes carry non-breaking spaces ("Ricin Poisoning\u00a0").
        title = title.replace(" ", "\u00a0", 1) if " " in title and rng.random() < 0.5 else title + "\u00a0"
    return title


def _name(title: str) -> str:
    cleaned = "".join(ch for ch in title.replace(" ", "_") if ch.isascii() and (ch.isalnum() or ch == "_"))
    while "__" in cleaned:
        cleaned = cleaned.replace("__", "_")
    return cleaned.strip("_")


def _catalogue(spec: SyntheticSpec) -> list[_Condition]:
    """Every condition over all releases, with the releases it is part of."""
    releases = max(1, spec.releases)
    # Real TES: 201, 218, 235 condition groupers; `conditions` is the middle of that range.
    base = spec.conditions * spec.scale
    final = max(1, round(base if releases == 1 else base * 1.07))
    first = final if releases == 1 else max(1, round(final * 0.855))
    conditions: list[_Condition] = []
    snomed_used: dict[str, None] = {}
    next_item = 0

    def new_condition(release: int) -> _Condition:
        nonlocal next_item
        key = len(conditions)
        rng = _rng(spec, "condition", key)
        roll = rng.random()
        rs_count = 1 if roll < 0.9 else 2 if roll < 0.97 else 3 if roll < 0.988 else rng.randint(4, 8)
        codes = []
        for _ in range(rs_count):
            code = snomed_code(3000000 + next_item * 7919)
            next_item += 1
            snomed_used[code] = None
            codes.append(code)
        title = _title(spec, key)
        condition = _Condition(
            key,
            title,
            f"{VALUESET_BASE}/{_uuid(rng)}",
            codes,
            release,
            releases - 1,
            vaccine=any(word in title for word in _VACCINE_CONDITIONS),
        )
        conditions.append(condition)
        return condition

    for _ in range(first):
        new_condition(0)
    for release in range(1, releases):
        target = first + round((final - first) * release / (releases - 1))
        active = [c for c in conditions if c.last_release >= release - 1]
        drop_rng = _rng(spec, "drops", release)
        dropped = [c for c in active if drop_rng.random() < 0.008]
        for condition in dropped:
            condition.last_release = release - 1
        alive = len(active) - len(dropped)
        for _ in range(max(0, target - alive)):
            new_condition(release)
    return conditions


# --- ValueSets -------------------------------------------------------------------------------------


def _meta(
    rng: random.Random, release: _Release, profiles: list[str], tags: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "versionId": "1",
        "lastUpdated": release.last_updated,
        "source": "#"
        + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") for _ in range(16)),
        "profile": profiles,
    }
    if tags:
        meta["tag"] = tags
    return meta


def _grouper_type(code: str, display: str, with_display: bool) -> dict[str, Any]:
    kind: dict[str, str] = {"system": USAGE_CONTEXT_TYPE, "code": "grouper-type"}
    if with_display:
        kind["display"] = "Grouper Type"
    return {
        "code": kind,
        "valueCodeableConcept": {
            "coding": [{"system": USAGE_CONTEXT_TYPE, "code": code, "display": display}],
            "text": display,
        },
    }


class _Ids:
    """Server-side resource ids: numeric strings that are never the SNOMED code."""

    def __init__(self) -> None:
        self.next = 1000

    def take(self) -> str:
        self.next += 1
        return str(self.next)


def _rs_grouper(
    release: _Release,
    condition: _Condition,
    snomed: str,
    compose: dict[str, Any],
    resource_id: str,
    rng: random.Random,
) -> dict[str, Any]:
    title = condition.title
    description = (
        "The set of codes from reporting specification value sets that are "
        f"associated, in RCKMS, with the {title} condition"
    )
    return {
        "resourceType": "ValueSet",
        "id": resource_id,
        "meta": _meta(rng, release, [RS_PROFILE, *CRMI_PROFILES]),
        "extension": EXTENSIONS,
        "url": f"{VALUESET_BASE}/rs-grouper-{snomed}",
        "version": release.rs_version,
        "name": f"ReportingSpecificationGrouper{snomed}",
        "title": title,
        "status": "active",
        "experimental": False,
        "date": release.rs_date,
        "publisher": "Reportable Conditions Knowledge Management System (RCKMS)",
        "description": description,
        "useContext": [
            _grouper_type("reporting-specification-grouper", "Reporting Specification Grouper", True),
            {
                "code": {"system": HL7_USAGE_CONTEXT_TYPE, "code": "focus", "display": "Clinical Focus"},
                "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": snomed}], "text": title},
            },
        ],
        "purpose": description,
        "compose": compose,
    }


def _condition_grouper(
    release: _Release, condition: _Condition, references: list[str], resource_id: str, rng: random.Random
) -> dict[str, Any]:
    title = condition.title
    tags = [
        {
            "system": "http://hl7.org/fhir/Library#relatedArtifact.dependsOn",
            "code": f"{BASE}/tes-content-library|{release.version}",
        },
        {
            "system": "http://hl7.org/fhir/ValueSet#useContext.context-type-value",
            "code": f"grouper-type${USAGE_CONTEXT_TYPE}|condition-grouper",
        },
    ]
    return {
        "resourceType": "ValueSet",
        "id": resource_id,
        "meta": _meta(rng, release, [CONDITION_PROFILE], tags),
        "extension": EXTENSIONS,
        "url": condition.url,
        "version": release.version,
        "name": _name(title),
        "title": title,
        "status": "active",
        "experimental": False,
        "date": release.date,
        "publisher": "Association of Public Health Laboratories (APHL)",
        "description": (
            "The set of all codes from value sets used in Reporting Specifications "
            f"that are associated with the '{title}' condition. "
            "(NOTE: Generated Content)"
        ),
        "useContext": [_grouper_type("condition-grouper", "Condition Grouper", False)],
        "compose": {"include": [{"valueSet": [reference]} for reference in references]},
    }


def _context_grouper(
    release: _Release,
    condition: _Condition,
    url: str,
    topic: str,
    compose: dict[str, Any],
    resource_id: str,
    rng: random.Random,
) -> dict[str, Any]:
    title = f"{condition.title} Additional Context: {topic}"
    return {
        "resourceType": "ValueSet",
        "id": resource_id,
        "meta": _meta(rng, release, list(CRMI_PROFILES)),
        "extension": EXTENSIONS,
        "url": url,
        "version": release.version,
        "name": _name(title),
        "title": title,
        "status": "active",
        "experimental": False,
        "date": release.date,
        "publisher": "Association of Public Health Laboratories (APHL)",
        "description": (f"Additional context codes ({topic.lower()}) for the '{condition.title}' condition."),
        "useContext": [_grouper_type("additional-context-grouper", "Additional Context Grouper", False)],
        "compose": compose,
    }


def _triggering(
    release: _Release, slug: str, title: str, compose: dict[str, Any], resource_id: str, rng: random.Random
) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": resource_id,
        "meta": _meta(rng, release, [TRIGGERING_PROFILE]),
        "url": f"{ERSD_BASE}/{slug}",
        "version": release.rs_version,
        "name": title.replace(" ", ""),
        "title": title,
        "status": "active",
        "experimental": False,
        "date": release.rs_date,
        "publisher": "eCR",
        "description": f"{title} (eRSD)",
        "useContext": [
            {
                "code": {"system": HL7_USAGE_CONTEXT_TYPE, "code": "program"},
                "valueCodeableConcept": {"text": "Public Health Reporting"},
            }
        ],
        "compose": compose,
    }


def _iter_valuesets(spec: SyntheticSpec) -> Iterator[dict[str, Any]]:
    pools = _Pools(spec.scale)
    releases = _releases(max(1, spec.releases))
    catalogue = _catalogue(spec)
    ids = _Ids()
    rs_content: dict[str, _Content] = {}
    context_content: dict[str, _Content] = {}
    context_topics: dict[str, str] = {}
    # Additional context groupers appear from the second release on (as in real TES).
    context_from = 1 if len(releases) > 1 else 0
    for release in releases:
        for condition in catalogue:
            if not condition.first_release <= release.index <= condition.last_release:
                continue
            rng = _rng(spec, "grouper", condition.key, release.index)
            if release.index > 0 and rng.random() < 0.01 and len(condition.snomed) < 11:
                condition.snomed.append(snomed_code(70000000 + condition.key * 16 + release.index))
            references: list[str] = []
            for snomed in condition.snomed:
                content_rng = _rng(spec, "rs", snomed, release.index)
                previous = rs_content.get(snomed)
                content = (
                    _initial_content(content_rng, pools, _size(content_rng), condition.vaccine)
                    if previous is None
                    else _drift(content_rng, pools, previous)
                )
                rs_content[snomed] = content
                references.append(f"{VALUESET_BASE}/rs-grouper-{snomed}|{release.rs_version}")
                yield _rs_grouper(
                    release, condition, snomed, _compose(pools, content, content_rng), ids.take(), content_rng
                )
            if release.index >= context_from:
                if not condition.contexts:
                    roll = _rng(spec, "contexts", condition.key)
                    if roll.random() < 0.23:
                        count = min(1 + int(roll.expovariate(0.45)), 10 - len(condition.snomed))
                        for number in range(max(0, count)):
                            url = f"{VALUESET_BASE}/{_uuid(roll)}"
                            condition.contexts.append(url)
                            context_topics[url] = _CONTEXT_TOPICS[
                                (condition.key + number) % len(_CONTEXT_TOPICS)
                            ]
                for url in condition.contexts:
                    content_rng = _rng(spec, "acg", url, release.index)
                    previous = context_content.get(url)
                    content = (
                        _initial_content(content_rng, pools, content_rng.randint(3, 80), False)
                        if previous is None
                        else _drift(content_rng, pools, previous)
                    )
                    content.fixed.clear()
                    context_content[url] = content
                    references.append(f"{url}|{release.version}")
                    yield _context_grouper(
                        release,
                        condition,
                        url,
                        context_topics[url],
                        _compose(pools, content, content_rng),
                        ids.take(),
                        content_rng,
                    )
            cg_rng = _rng(spec, "condition-grouper", condition.key, release.index)
            resource_id = _uuid(cg_rng) if release.index == 0 else ids.take()
            yield _condition_grouper(release, condition, references, resource_id, cg_rng)
        for slug, title in _TRIGGERING:
            rng = _rng(spec, "triggering", slug, release.index)
            content = _initial_content(rng, pools, rng.randint(40, 400), False)
            yield _triggering(release, slug, title, _compose(pools, content, rng), ids.take(), rng)


def generate_valuesets(spec: SyntheticSpec = SyntheticSpec()) -> list[dict[str, Any]]:
    """Every ValueSet of every release (triggering ones included), in memory."""
    return list(_iter_valuesets(spec))


# --- configurations --------------------------------------------------------------------------------


def jurisdiction_ids(count: int) -> list[str]:
    """The first ``count`` jurisdiction codes: the 56 US ones, then local ones like ``SDDH``."""
    out = list(US_JURISDICTIONS[:count])
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    index = 0
    while len(out) < count:
        first, second = divmod(index, 26)
        if first < 26:
            code = f"{letters[(first + 18) % 26]}{letters[(second + 3) % 26]}DH"
        else:
            code = f"L{index:04d}DH"
        out.append(code)
        index += 1
    return out


@dataclass(frozen=True)
class _Child:
    url: str
    versions: tuple[str, ...]  # oldest first
    title: str
    codes: dict[str, list[str]]  # latest version's codes per system (for "repeat" additions)


def _children(valuesets: Sequence[dict[str, Any]]) -> list[_Child]:
    by_url: dict[str, list[dict[str, Any]]] = {}
    for resource in valuesets:
        if classify.classify(resource) == classify.REPORTING_SPEC_GROUPER:
            by_url.setdefault(resource["url"], []).append(resource)
    children: list[_Child] = []
    for url in sorted(by_url):
        versions = sorted(by_url[url], key=lambda r: r["version"])
        latest = versions[-1]
        codes: dict[str, list[str]] = {}
        for include in latest["compose"]["include"]:
            codes.setdefault(include["system"], []).extend(
                concept["code"] for concept in include.get("concept", [])[:50]
            )
        children.append(_Child(url, tuple(r["version"] for r in versions), latest["title"], codes))
    return children


_ADDED = [
    ("loinc_codes", LOINC),
    ("snomed_codes", SNOMED),
    ("icd10_codes", ICD10CM),
    ("rxnorm_codes", RXNORM),
]


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_configurations(spec: SyntheticSpec, valuesets: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Configurations of ``spec.jurisdictions`` jurisdictions over the RS groupers given."""
    children = _children(valuesets)
    if not children:
        return []
    latest_version = max(version for child in children for version in child.versions)
    current = [child for child in children if child.versions[-1] == latest_version]
    retired = [child for child in children if child.versions[-1] != latest_version]
    pools = _Pools(spec.scale)
    start = datetime(2025, 1, 6, 8, 0, 0, tzinfo=UTC)
    configurations: list[dict[str, Any]] = []
    for jurisdiction in jurisdiction_ids(spec.jurisdictions):
        rng = _rng(spec, "configurations", jurisdiction)
        wanted = spec.configurations_per_jurisdiction
        order = rng.sample(current, len(current)) + rng.sample(retired, len(retired))
        picks: list[tuple[_Child, str]] = []
        for child in order[:wanted]:
            # Most jurisdictions track the latest RS grouper version; some lag behind.
            version = child.versions[-1]
            if len(child.versions) > 1 and rng.random() < 0.15:
                version = rng.choice(child.versions[:-1])
            picks.append((child, version))
        extra = 0
        while len(picks) < wanted:  # more configurations than groupers: other versions
            child = order[extra % len(order)]
            picks.append((child, child.versions[(extra // len(order)) % len(child.versions)]))
            extra += 1
        for child, version in picks:
            created = start + timedelta(minutes=rng.randint(0, 60 * 24 * 240))
            updated = created + timedelta(minutes=rng.randint(0, 60 * 24 * 60))
            record: dict[str, Any] = {
                "id": len(configurations) + 1,
                "jurisdiction_id": jurisdiction,
                "child_grouper_url": child.url,
                "child_grouper_version": version,
                "display_name_override": (None if rng.random() < 0.85 else f"{child.title} ({jurisdiction})"),
                "version": 1 if rng.random() < 0.6 else rng.randint(2, 5),
            }
            for column, system in _ADDED:
                codes: list[str] = []
                if rng.random() < 0.45:
                    for _ in range(rng.randint(1, 4)):
                        base = child.codes.get(system)
                        if base and rng.random() < 0.15:
                            codes.append(rng.choice(base))  # repeats a base code
                        else:
                            item = rng.randrange(pools.size[system])
                            codes.append(pools.concept(system, item)["code"])
                record[column] = list(dict.fromkeys(codes))
            record.update(
                {
                    "is_active": True,
                    "created_by": f"analyst{rng.randint(1, 9)}@{jurisdiction.lower()}.health.example",
                    "created_at": _timestamp(created),
                    "updated_at": _timestamp(updated),
                }
            )
            roll = rng.random()
            if roll < 0.008:
                record["is_active"] = False  # switched off
            elif roll < 0.011:
                record["child_grouper_version"] = MISSING_VERSION  # no such grouper version
            elif roll < 0.013:
                record["jurisdiction_id"] = UNKNOWN_JURISDICTION  # not a known jurisdiction
            configurations.append(record)
    return configurations


# --- files -----------------------------------------------------------------------------------------


def render(valuesets: Sequence[dict[str, Any]]) -> tuple[list[files.RenderedFile], int]:
    """The fetch output files of ``valuesets`` (triggering ones left out) and the ignored count."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    ignored = 0
    for resource in valuesets:
        category = classify.classify(resource)
        if category is None:
            ignored += 1
            continue
        groups.setdefault((category, resource["version"]), []).append(resource)
    return files.render(groups), ignored


def generate(out_dir: Path, spec: SyntheticSpec = SyntheticSpec()) -> SyntheticSummary:
    """Write ``out_dir/tes/`` (category files + manifest.json) and ``out_dir/configurations.json``.

    Byte-identical for the same spec; a second run with the same spec rewrites nothing.
    """
    out_dir = Path(out_dir)
    valuesets = generate_valuesets(spec)
    configurations = generate_configurations(spec, valuesets)
    rendered, ignored = render(valuesets)
    tes_dir = out_dir / "tes"
    last = _releases(max(1, spec.releases))[-1]
    stamp = datetime.fromisoformat(last.last_updated)
    files.write(tes_dir, rendered, ignored_count=ignored, now=stamp)
    configurations_file = out_dir / "configurations.json"
    data = (json.dumps(configurations, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    if not configurations_file.exists() or configurations_file.read_bytes() != data:
        out_dir.mkdir(parents=True, exist_ok=True)
        temporary = configurations_file.with_name(f".{configurations_file.name}.{os.getpid()}")
        temporary.write_bytes(data)
        os.replace(temporary, configurations_file)
    counts = {
        classify.CONDITION_GROUPER: 0,
        classify.REPORTING_SPEC_GROUPER: 0,
        classify.ADDITIONAL_CONTEXT_GROUPER: 0,
        "triggering": ignored,
        "configurations": len(configurations),
        "codes": 0,
    }
    for resource in valuesets:
        category = classify.classify(resource)
        if category is None:
            continue
        counts[category] += 1
        counts["codes"] += sum(len(include.get("concept", [])) for include in resource["compose"]["include"])
    return SyntheticSummary(tes_dir, configurations_file, counts)
