"""`refinery export`: the files today's eCR Refiner reads, against a real PostgreSQL.

Synthetic TES data shaped like the real content (../shared/tes-sample): a COVID-19 condition
grouper that references two RS groupers (840539006 and 186747009, as in TES 3.0.0) and an
additional context grouper, its 2.0.0 release referencing older RS grouper versions, Dengue,
a condition with a non-ASCII title, and one RS grouper that two condition groupers of the same
release reference. Two states are built and exported into one folder:

- state 1: SD configures both COVID RS groupers and Dengue; AK configures COVID 840539006,
  Legionnaires and the ambiguous RS grouper;
- state 2: SD's Dengue configuration adds a code (changed), SD's COVID is untouched
  (unchanged), AK's Legionnaires configuration is deactivated (removed).

Every file is parsed and checked field by field against ../shared/refiner-payloads.md.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from refinery import cli
from refinery.commands import export as export_command
from refinery.connection import DatabaseSettings
from tests.conftest import create_database, drop_database, env_for

pytestmark = pytest.mark.slow

VALUESET = "https://tes.tools.aimsplatform.org/api/fhir/ValueSet"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OID_DISCHARGE = "urn:oid:2.16.840.1.113883.12.112"
RS_PROFILE = "http://aphl.org/fhir/vsm/StructureDefinition/vsm-reportingspecificationgroupervalueset"
CONDITION_PROFILE = "http://aphl.org/fhir/vsm/StructureDefinition/vsm-conditiongroupervalueset"
CONTEXT_TYPE = "http://aphl.org/fhir/vsm/CodeSystem/usage-context-type"

# ../shared/refiner-payloads.md, written out independently of the code under test
KEY_OIDS = {
    "loinc": "2.16.840.1.113883.6.1",
    "snomed": "2.16.840.1.113883.6.96",
    "rxnorm": "2.16.840.1.113883.6.88",
    "icd10": "2.16.840.1.113883.6.90",
    "cvx": "2.16.840.1.113883.12.292",
}
KEYS = ["loinc", "snomed", "rxnorm", "icd10", "cvx", "other"]
URL_KEYS = {LOINC: "loinc", SNOMED: "snomed", ICD10: "icd10"}
OTHER_SYSTEMS = {
    CPT: "2.16.840.1.113883.6.12",
    V3_ACTCODE: V3_ACTCODE,
    OID_DISCHARGE: "2.16.840.1.113883.12.112",
}
SECTION_TABLE = """
46240-8|Encounters Section|1.1, 3.1, 3.1.1
10164-2|History of Present Illness Section|1.1, 3.1, 3.1.1
11369-6|Immunizations Section|1.1, 3.1, 3.1.1
29549-3|Medications Administered Section|1.1, 3.1, 3.1.1
18776-5|Plan of Treatment Section|1.1, 3.1, 3.1.1
11450-4|Problem Section|1.1, 3.1, 3.1.1
29299-5|Reason for Visit Section|1.1, 3.1, 3.1.1
30954-2|Results Section|1.1, 3.1, 3.1.1
29762-2|Social History Section|1.1, 3.1, 3.1.1
10187-3|Review of Systems Section|3.1, 3.1.1
10154-3|Chief Complaint Section|3.1, 3.1.1
10160-0|Medications Section|3.1, 3.1.1
47519-4|Procedures Section|3.1, 3.1.1
46241-6|Admission Diagnosis Section|3.1, 3.1.1
11535-2|Discharge Diagnosis Section|3.1, 3.1.1
42346-7|Admission Medications Section|3.1, 3.1.1
11348-0|Past Medical History Section|3.1, 3.1.1
8716-3|Vital Signs Section|3.1, 3.1.1
90767-5|Pregnancy Section|3.1, 3.1.1
83910-0|Emergency Outbreak Information Section|3.1, 3.1.1
88085-6|Reportability Response Information Section|3.1, 3.1.1
"""
RETAINED_SECTIONS = {"10154-3", "29299-5", "10164-2", "10187-3", "83910-0", "88085-6"}
RECONSTRUCTABLE = {"30954-2", "11450-4", "11369-6", "29549-3", "18776-5"}

COVID_URL = f"{VALUESET}/6e3c1a4b-0d2f-4c7e-9a51-2f8b7c0d9e11"
DENGUE_URL = f"{VALUESET}/0138da5e-7df9-4e4a-9ef1-35c2414ca7e6"
LEGION_URL = f"{VALUESET}/9a0b4c3d-1e2f-4a5b-8c6d-7e8f9a0b1c2d"
AMBIGUOUS_LOW_URL = f"{VALUESET}/1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
AMBIGUOUS_HIGH_URL = f"{VALUESET}/f9e8d7c6-b5a4-4392-8170-6f5e4d3c2b1a"
CONTEXT_URL = f"{VALUESET}/c727361f-31be-4a82-94f4-c1b9f6a847b1"
LEGION_TITLE = "L\u00e9gionnaires\u2019 Disease"

# RS grouper codes: (system, code, display); 186747009 shares two codes with 840539006
RS_CODES: dict[str, list[tuple[str, str, str]]] = {
    "840539006": [
        (SNOMED, "840539006", "COVID-19"),
        (SNOMED, "119419001", "Cyanosis of skin (finding)"),
        (LOINC, "94500-6", "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory system specimen by NAA"),
        (LOINC, "94558-4", "SARS-CoV-2 (COVID-19) Ag [Presence] in Respiratory system specimen by Rapid IA"),
        (ICD10, "U07.1", "COVID-19"),
        (CPT, "87635", "Infectious agent detection by nucleic acid (DNA or RNA); SARS-CoV-2"),
        (V3_ACTCODE, "IMP", "inpatient encounter"),
        (OID_DISCHARGE, "20", "Expired"),
    ],
    "186747009": [
        (SNOMED, "186747009", "Coronavirus infection (disorder)"),
        (SNOMED, "119419001", "Cyanosis of skin (finding)"),
        (LOINC, "94500-6", "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory system specimen by NAA"),
        (LOINC, "94309-2", "SARS-CoV-2 (COVID-19) RNA [Presence] in Specimen by NAA"),
        (ICD10, "B34.2", "Coronavirus infection, unspecified"),
    ],
    "38362002": [
        (SNOMED, "38362002", "Dengue (disorder)"),
        (LOINC, "7855-0", "Dengue virus IgG Ab [Presence] in Serum"),
        (ICD10, "A90", "Dengue fever [classical dengue]"),
    ],
    "233794006": [
        (SNOMED, "233794006", "Legionnaires' disease (disorder)"),
        (LOINC, "33958-1", "Legionella pneumophila Ag [Presence] in Urine"),
    ],
    "77352002": [
        (SNOMED, "77352002", "Shared condition (disorder)"),
        (ICD10, "Z20.9", "Contact with and (suspected) exposure to unspecified communicable disease"),
    ],
}
CURRENT_RS = "20250829"
OLD_RS = "20250328"


# --- synthetic TES and configurations -------------------------------------------------------------


def _rs_grouper(snomed: str, title: str, version: str, resource_id: int) -> dict[str, Any]:
    include: dict[str, list[dict[str, str]]] = {}
    for system, code, display in RS_CODES[snomed]:
        include.setdefault(system, []).append({"code": code, "display": display})
    return {
        "resourceType": "ValueSet",
        "id": str(resource_id),
        "meta": {"versionId": "1", "profile": [RS_PROFILE]},
        "url": f"{VALUESET}/rs-grouper-{snomed}",
        "version": version,
        "name": f"ReportingSpecificationGrouper{snomed}",
        "title": title,
        "status": "active",
        "useContext": [
            {
                "code": {"system": CONTEXT_TYPE, "code": "grouper-type"},
                "valueCodeableConcept": {
                    "coding": [{"system": CONTEXT_TYPE, "code": "reporting-specification-grouper"}]
                },
            },
            {
                "code": {
                    "system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                    "code": "focus",
                },
                "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": snomed}], "text": title},
            },
        ],
        "compose": {
            "include": [{"system": system, "concept": concepts} for system, concepts in include.items()]
        },
    }


def _condition_grouper(
    url: str, title: str, release: str, references: list[str], resource_id: int
) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": str(resource_id),
        "meta": {"versionId": "1", "profile": [CONDITION_PROFILE]},
        "url": url,
        "version": release,
        "name": title.replace(" ", "_"),
        "title": title,
        "status": "active",
        "useContext": [
            {
                "code": {"system": CONTEXT_TYPE, "code": "grouper-type"},
                "valueCodeableConcept": {"coding": [{"system": CONTEXT_TYPE, "code": "condition-grouper"}]},
            }
        ],
        "compose": {"include": [{"valueSet": [reference]} for reference in references]},
    }


def _context_grouper() -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": "900",
        "url": CONTEXT_URL,
        "version": "3.0.0",
        "name": "COVID19_Additional_Context",
        "title": "COVID-19 Additional Context",
        "status": "active",
        "useContext": [
            {
                "code": {"system": CONTEXT_TYPE, "code": "grouper-type"},
                "valueCodeableConcept": {
                    "coding": [{"system": CONTEXT_TYPE, "code": "additional-context-grouper"}]
                },
            }
        ],
        "compose": {
            "include": [{"system": SNOMED, "concept": [{"code": "1240581000000104", "display": "x"}]}]
        },
    }


def _rs(snomed: str, version: str = CURRENT_RS) -> str:
    return f"{VALUESET}/rs-grouper-{snomed}|{version}"


def tes_valuesets() -> list[dict[str, Any]]:
    titles = {
        "840539006": "COVID-19",
        "186747009": "COVID-19",
        "38362002": "Dengue",
        "233794006": LEGION_TITLE,
        "77352002": "Shared condition",
    }
    valuesets = []
    for offset, (snomed, title) in enumerate(titles.items()):
        valuesets.append(_rs_grouper(snomed, title, CURRENT_RS, 100 + offset))
    valuesets.append(_rs_grouper("840539006", "COVID-19", OLD_RS, 200))
    valuesets += [
        _condition_grouper(
            COVID_URL,
            "COVID-19",
            "3.0.0",
            [_rs("186747009"), _rs("840539006"), f"{CONTEXT_URL}|3.0.0"],
            300,
        ),
        _condition_grouper(COVID_URL, "COVID-19", "2.0.0", [_rs("840539006", OLD_RS)], 301),
        _condition_grouper(DENGUE_URL, "Dengue Virus Infection", "3.0.0", [_rs("38362002")], 302),
        _condition_grouper(LEGION_URL, LEGION_TITLE, "3.0.0", [_rs("233794006")], 303),
        _condition_grouper(AMBIGUOUS_HIGH_URL, "Zeta Condition", "3.0.0", [_rs("77352002")], 304),
        _condition_grouper(AMBIGUOUS_LOW_URL, "Alpha Condition", "3.0.0", [_rs("77352002")], 305),
        _context_grouper(),
    ]
    return valuesets


def configuration(
    ident: int,
    jurisdiction: str,
    snomed: str,
    *,
    loinc: list[str] | None = None,
    active: bool = True,
    updated: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    return {
        "id": ident,
        "jurisdiction_id": jurisdiction,
        "child_grouper_url": f"{VALUESET}/rs-grouper-{snomed}",
        "child_grouper_version": CURRENT_RS,
        "display_name_override": None,
        "version": 1,
        "loinc_codes": loinc or [],
        "snomed_codes": [],
        "icd10_codes": [],
        "rxnorm_codes": [],
        "is_active": active,
        "created_by": "analyst@example.org",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": updated,
    }


def state_one() -> list[dict[str, Any]]:
    return [
        configuration(1, "SD", "840539006"),
        configuration(2, "SD", "186747009"),
        configuration(3, "SD", "38362002"),
        configuration(4, "AK", "840539006"),
        configuration(5, "AK", "233794006"),
        configuration(6, "AK", "77352002"),
    ]


ADDED_LOINC = "99999-9"


def state_two() -> list[dict[str, Any]]:
    rows = state_one()
    rows[2] = configuration(3, "SD", "38362002", loinc=[ADDED_LOINC], updated="2026-02-01T00:00:00Z")
    rows[4] = configuration(5, "AK", "233794006", active=False, updated="2026-02-01T00:00:00Z")
    return rows


# --- reading the output ------------------------------------------------------------------------------


def uuid_of(url: str) -> str:
    return url.rsplit("/", 1)[1].lower()


def tree(out: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `out`: relative path -> (bytes, mtime_ns)."""
    return {
        str(path.relative_to(out)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }


def current_only(files: dict[str, tuple[bytes, int]]) -> dict[str, bytes]:
    """The bytes of the files a fresh export writes: mappings, current.json and current versions."""
    kept = {}
    for path, (content, _mtime) in files.items():
        parts = path.split("/")
        if len(parts) == 5:  # configurations/<JD>/<CG_UUID>/<VERSION>/<file>
            pointer = files["/".join([*parts[:3], "current.json"])][0]
            if json.loads(pointer)["version"] != int(parts[3]):
                continue
        kept[path] = content
    return kept


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def path_safe(title: str) -> str:
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    return "".join(char for char in folded if char.isascii() and (char.isalnum() or char == "_"))


def check_active(document: Any) -> None:
    """active.json, field by field (schema version 1)."""
    assert isinstance(document, dict)
    assert list(document) == [
        "schema_version",
        "code_system_sets",
        "sections",
        "included_condition_rsg_codes",
    ]
    assert document["schema_version"] == 1 and type(document["schema_version"]) is int
    sets = document["code_system_sets"]
    assert list(sets) == KEYS
    for key in KEYS:
        assert isinstance(sets[key], list)
        seen = set()
        for entry in sets[key]:
            assert list(entry) == ["code", "display", "system"]
            assert all(isinstance(entry[name], str) for name in entry), entry
            assert entry["code"] and entry["code"] not in seen, f"one entry per code in {key}"
            seen.add(entry["code"])
            if key == "other":
                assert entry["system"] not in KEY_OIDS.values()
            else:
                assert entry["system"] == KEY_OIDS[key]
    expected_sections = []
    for line in SECTION_TABLE.strip().splitlines():
        code, name, versions = line.split("|")
        expected_sections.append(
            {
                "include": True,
                "narrative": "retain",
                "action": "retain" if code in RETAINED_SECTIONS else "refine",
                "name": name,
                "code": code,
                "versions": versions.split(", "),
                "section_type": "standard",
            }
        )
    expected_sections.sort(key=lambda section: section["code"])
    sections = document["sections"]
    assert [list(section) for section in sections] == [
        ["include", "narrative", "action", "name", "code", "versions", "section_type"]
    ] * 21
    assert sections == expected_sections
    for section in sections:
        if section["narrative"] in ("reconstruct", "keep_on_match"):
            assert section["action"] == "refine"
        if section["narrative"] == "reconstruct":
            assert section["code"] in RECONSTRUCTABLE
    codes = document["included_condition_rsg_codes"]
    assert codes and codes == sorted(set(codes)) and all(isinstance(code, str) for code in codes)


def check_folder(out: Path, *, after_crash: bool = False) -> dict[str, dict[str, Any]]:
    """Every file of an export checked against the spec; per jurisdiction: its mapping and conditions.

    After a crash, a version folder no current.json names may be incomplete (the reader never
    opens it; the next export completes it); every file present must still be whole and valid.
    """
    root = out / "configurations"
    assert not (root / "maintenance.lock").exists()
    assert not [path for path in root.rglob(".*")], "no temporary file is left behind"
    found: dict[str, dict[str, Any]] = {}
    for jurisdiction_dir in sorted(root.iterdir()):
        jd = jurisdiction_dir.name
        assert jd == jd.upper()
        mapping = read_json(jurisdiction_dir / "rsg_cg_mapping.json")
        assert isinstance(mapping, dict)
        conditions: dict[str, Any] = {}
        for condition_dir in sorted(path for path in jurisdiction_dir.iterdir() if path.is_dir()):
            assert condition_dir.name == condition_dir.name.lower()
            current = read_json(condition_dir / "current.json")
            assert list(current) == ["version"]
            version = current["version"]
            assert version is None or (type(version) is int and version > 0)
            versions = {}
            for version_dir in sorted(path for path in condition_dir.iterdir() if path.is_dir()):
                assert version_dir.name.isdigit() and int(version_dir.name) > 0
                names = sorted(path.name for path in version_dir.iterdir())
                if after_crash and names != ["active.json", "metadata.json"]:
                    assert version != int(version_dir.name), "current.json names an incomplete version"
                    assert set(names) <= {"active.json"}
                    if names:
                        check_active(read_json(version_dir / "active.json"))
                    continue
                assert names == ["active.json", "metadata.json"]
                active = read_json(version_dir / "active.json")
                check_active(active)
                metadata = read_json(version_dir / "metadata.json")
                assert list(metadata) == [
                    "condition_name",
                    "canonical_url",
                    "tes_version",
                    "jurisdiction_id",
                    "configuration_version",
                    "child_rsg_snomed_codes",
                ]
                assert uuid_of(metadata["canonical_url"]) == condition_dir.name
                assert metadata["jurisdiction_id"] == jd
                assert metadata["configuration_version"] == int(version_dir.name)
                assert metadata["child_rsg_snomed_codes"] == active["included_condition_rsg_codes"]
                versions[int(version_dir.name)] = {"active": active, "metadata": metadata}
            if version is not None:
                assert version in versions, "current.json names a version whose files exist"
                metadata = versions[version]["metadata"]
                # (between the mapping and current.json, a crash leaves them out of step: the
                # reader then skips the condition, which the application's order allows)
                for code in [] if after_crash else metadata["child_rsg_snomed_codes"]:
                    assert mapping[code] == {
                        "canonical_url": metadata["canonical_url"],
                        "name": path_safe(metadata["condition_name"]),
                        "tes_version": metadata["tes_version"],
                    }
            conditions[condition_dir.name] = {"current": version, "versions": versions}
        for code, value in mapping.items():
            assert list(value) == ["canonical_url", "name", "tes_version"]
            if after_crash:
                continue
            target = conditions[uuid_of(value["canonical_url"])]
            assert target["current"] is not None, "the mapping lists only active configurations"
            assert code in target["versions"][target["current"]]["active"]["included_condition_rsg_codes"]
        found[jd] = {"mapping": mapping, "conditions": conditions}
    return found


# --- the two states --------------------------------------------------------------------------------------


@dataclass
class Exported:
    settings: DatabaseSettings
    out: Path
    first: dict[str, tuple[bytes, int]]  # the folder after state 1
    first_copy: Path  # a copy of it (for the crash test)
    second: dict[str, tuple[bytes, int]]  # after state 2
    tes_dir: Path
    second_configurations: Path


def _rows(settings: DatabaseSettings, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.conninfo()) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def exported(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    settings = create_database(server, "refinery_export")
    base = tmp_path_factory.mktemp("export")
    tes_dir = base / "tes"
    tes_dir.mkdir()
    (tes_dir / "tes.json").write_text(
        json.dumps({"metadata": {"category": "synthetic"}, "valuesets": tes_valuesets()})
    )
    first_configurations, second_configurations = (
        base / "configurations-1.json",
        base / "configurations-2.json",
    )
    first_configurations.write_text(json.dumps(state_one()))
    second_configurations.write_text(json.dumps(state_two()))
    out = base / "out"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env_for(settings).items():
            patch.setenv(name, value)
        for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
            patch.delenv(name, raising=False)
        try:
            assert cli.main(["load", "tes", str(tes_dir)]) == 0
            assert cli.main(["load", "configurations", str(first_configurations)]) == 0
            assert cli.main(["build"]) == 0
            assert cli.main(["export", "--out", str(out)]) == 0
            first = tree(out)
            first_copy = base / "first-copy"
            shutil.copytree(out, first_copy)
            assert cli.main(["load", "configurations", str(second_configurations)]) == 0
            assert cli.main(["build"]) == 0
            assert cli.main(["export", "--out", str(out)]) == 0
            yield Exported(settings, out, first, first_copy, tree(out), tes_dir, second_configurations)
        finally:
            drop_database(server, settings)


def test_every_file_follows_the_spec(exported: Exported) -> None:
    for folder in (exported.first_copy, exported.out):
        found = check_folder(folder)
        assert sorted(found) == ["AK", "SD"]


def test_covid_rs_groupers_make_one_payload(exported: Exported) -> None:
    sd = check_folder(exported.first_copy)["SD"]
    covid = sd["conditions"][uuid_of(COVID_URL)]
    assert covid["current"] == 1
    active, metadata = covid["versions"][1]["active"], covid["versions"][1]["metadata"]
    assert active["included_condition_rsg_codes"] == ["186747009", "840539006"]
    assert metadata["condition_name"] == "COVID-19"
    assert metadata["canonical_url"] == COVID_URL
    assert metadata["tes_version"] == "3.0.0", "the latest release referencing the RS groupers"
    assert (
        sd["mapping"]["840539006"]
        == sd["mapping"]["186747009"]
        == {
            "canonical_url": COVID_URL,
            "name": "COVID19",
            "tes_version": "3.0.0",
        }
    )
    # the union of both RS groupers' codes, one entry per code per key, each under its key with
    # the display TES publishes for it
    expected: dict[str, set[tuple[str, str, str]]] = {key: set() for key in KEYS}
    for snomed in ("840539006", "186747009"):
        for system, code, display in RS_CODES[snomed]:
            if system in URL_KEYS:
                expected[URL_KEYS[system]].add((code, display, KEY_OIDS[URL_KEYS[system]]))
            else:
                expected["other"].add((code, display, OTHER_SYSTEMS[system]))
    got = {
        key: {(entry["code"], entry["display"], entry["system"]) for entry in active["code_system_sets"][key]}
        for key in KEYS
    }
    assert got == expected
    assert len(active["code_system_sets"]["loinc"]) == 3 and len(active["code_system_sets"]["snomed"]) == 3
    # two payloads for SD (COVID, Dengue): the several COVID configurations did not split it
    assert sorted(sd["conditions"]) == sorted([uuid_of(COVID_URL), uuid_of(DENGUE_URL)])
    ak = check_folder(exported.first_copy)["AK"]
    ak_covid = ak["conditions"][uuid_of(COVID_URL)]["versions"][1]["active"]
    assert ak_covid["included_condition_rsg_codes"] == ["840539006"]
    assert ak["mapping"]["233794006"]["name"] == "LegionnairesDisease", (
        "NFKD folded to ASCII, whitespace and punctuation removed"
    )


def test_ambiguous_rs_grouper_is_mapped_deterministically_and_reported(exported: Exported) -> None:
    ak = check_folder(exported.first_copy)["AK"]
    assert ak["mapping"]["77352002"]["canonical_url"] == AMBIGUOUS_LOW_URL
    [(count,)] = _rows(
        exported.settings,
        "select candidate_condition_count from refiner_intermediate.int_rs_grouper_condition_groupers"
        " where rs_grouper_url = %s",
        f"{VALUESET}/rs-grouper-77352002",
    )
    assert count == 2
    warned = _rows(
        exported.settings,
        "select count(*) from refiner_intermediate.int_rs_grouper_condition_groupers"
        " where candidate_condition_count > 1",
    )[0][0]
    assert warned == 1, "only the ambiguous RS grouper is reported"


def test_versions_across_two_states(exported: Exported) -> None:
    dengue = f"configurations/SD/{uuid_of(DENGUE_URL)}"
    covid = f"configurations/SD/{uuid_of(COVID_URL)}"
    legion = f"configurations/AK/{uuid_of(LEGION_URL)}"
    first, second = exported.first, exported.second
    # changed: a new version folder, the old one byte-identical and untouched
    assert json.loads(first[f"{dengue}/current.json"][0]) == {"version": 1}
    assert json.loads(second[f"{dengue}/current.json"][0]) == {"version": 2}
    for name in ("active.json", "metadata.json"):
        assert second[f"{dengue}/1/{name}"] == first[f"{dengue}/1/{name}"]
    new = json.loads(second[f"{dengue}/2/active.json"][0])
    old = json.loads(first[f"{dengue}/1/active.json"][0])
    new_loinc = {entry["code"] for entry in new["code_system_sets"]["loinc"]}
    assert new_loinc == {entry["code"] for entry in old["code_system_sets"]["loinc"]} | {ADDED_LOINC}
    assert json.loads(second[f"{dengue}/2/metadata.json"][0])["configuration_version"] == 2
    # unchanged: same version, every file untouched (bytes and mtime)
    for name in ("current.json", "1/active.json", "1/metadata.json"):
        assert second[f"{covid}/{name}"] == first[f"{covid}/{name}"]
    assert f"{covid}/2/active.json" not in second
    # removed: current.json says null, the code left the mapping, the old folder stays
    assert json.loads(second[f"{legion}/current.json"][0]) == {"version": None}
    assert second[f"{legion}/1/active.json"] == first[f"{legion}/1/active.json"]
    assert "233794006" in json.loads(first["configurations/AK/rsg_cg_mapping.json"][0])
    ak_mapping = json.loads(second["configurations/AK/rsg_cg_mapping.json"][0])
    assert sorted(ak_mapping) == ["77352002", "840539006"]
    # the database knows every payload ever exported
    rows = _rows(
        exported.settings,
        "select jurisdiction_id, condition_grouper_url, version, current_version, is_current"
        " from refiner.refiner_payload_versions order by 1, 2, 3",
    )
    assert rows == sorted(
        [
            ("AK", AMBIGUOUS_LOW_URL, 1, 1, True),
            ("AK", COVID_URL, 1, 1, True),
            ("AK", LEGION_URL, 1, None, False),
            ("SD", COVID_URL, 1, 1, True),
            ("SD", DENGUE_URL, 1, 2, False),
            ("SD", DENGUE_URL, 2, 2, True),
        ]
    )


def test_unchanged_export_rewrites_nothing(exported: Exported, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env_for(exported.settings).items():
            patch.setenv(name, value)
        before = tree(exported.out)
        directories = {path: path.stat().st_mtime_ns for path in exported.out.rglob("*") if path.is_dir()}
        assert cli.main(["export", "--out", str(exported.out)]) == 0
    assert tree(exported.out) == before
    assert {path: path.stat().st_mtime_ns for path in exported.out.rglob("*") if path.is_dir()} == directories
    assert "0 file(s) written" in capsys.readouterr().out


def test_a_crash_between_files_leaves_a_readable_folder_and_the_next_export_completes_it(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env_for(exported.settings).items():
        monkeypatch.setenv(name, value)
    real_replace = export_command._replace
    expected = {path: content for path, (content, _mtime) in exported.second.items()}
    changed = [path for path in expected if exported.first.get(path, (None, 0))[0] != expected[path]]
    crashes = 0
    for allowed in range(50):
        out = tmp_path / f"crash-{allowed}"
        shutil.copytree(exported.first_copy, out)
        calls = {"n": 0}

        def failing_replace(source: Path, target: Path, allowed: int = allowed, calls: dict = calls) -> None:
            if calls["n"] == allowed:
                raise OSError(28, "No space left on device", str(target))
            calls["n"] += 1
            real_replace(source, target)

        monkeypatch.setattr(export_command, "_replace", failing_replace)
        code = cli.main(["export", "--out", str(out)])
        monkeypatch.setattr(export_command, "_replace", real_replace)
        if code == 0:
            break  # every file of the change was written before the injected failure
        crashes += 1
        assert code == 2
        check_folder(out, after_crash=True)  # current.json names whole versions; no temporary file
        assert cli.main(["export", "--out", str(out)]) == 0
        assert {path: content for path, (content, _mtime) in tree(out).items()} == expected
    assert crashes == len(changed) == 5, "Dengue's two new files, AK's mapping, two current.json"


def test_failed_write_has_one_error_line(exported: Exported, tmp_path: Path, monkeypatch, capsys) -> None:
    for name, value in env_for(exported.settings).items():
        monkeypatch.setenv(name, value)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    assert cli.main(["export", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "cannot write the export" in err and "\n" not in err


def test_jurisdiction_filter_and_unknown_jurisdiction(
    exported: Exported, tmp_path: Path, monkeypatch, capsys
) -> None:
    for name, value in env_for(exported.settings).items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "sd-only"
    assert cli.main(["export", "--out", str(out), "--jurisdiction", "sd"]) == 0
    assert sorted(path.name for path in (out / "configurations").iterdir()) == ["SD"]
    fresh = current_only(exported.second)
    sd_only = {path: content for path, content in fresh.items() if path.startswith("configurations/SD/")}
    assert {path: content for path, (content, _m) in tree(out).items()} == sd_only
    capsys.readouterr()
    assert cli.main(["export", "--out", str(out), "--jurisdiction", "ZZ"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown jurisdiction(s): ZZ"


def test_export_before_any_build_is_a_clear_error(
    fresh_database, tmp_path: Path, monkeypatch, capsys
) -> None:
    for name, value in env_for(fresh_database).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["export", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "refiner_payload_versions does not exist" in err and "refinery build" in err
    assert not (tmp_path / "out").exists()


def test_sync_exports_after_a_successful_build(
    exported: Exported, tmp_path: Path, monkeypatch, capsys
) -> None:
    for name, value in env_for(exported.settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TES_API_KEY", raising=False)
    out = tmp_path / "synced"
    code = cli.main(
        [
            "sync",
            "--tes-dir",
            str(exported.tes_dir),
            "--configurations",
            str(exported.second_configurations),
            "--export",
            str(out),
        ]
    )
    assert code == 0
    steps = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    export_step = next(step for step in steps if step["step"] == "export")
    assert export_step["status"] == "ok" and export_step["payloads"] == 4
    # a fresh folder gets what the reader needs: the current versions (no history folders)
    assert {path: content for path, (content, _m) in tree(out).items()} == current_only(exported.second)


def _bad_plan(exported: Exported, **changes: Any) -> export_command.ExportPlan:
    """The current plan with the first payload's fields replaced."""
    plan = export_command.read_plan(exported.settings)
    first = dataclasses.replace(plan.payloads[0], **changes)
    return export_command.ExportPlan([first, *plan.payloads[1:]], plan.pointers, plan.jurisdictions)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"code_system_sets": {"loinc": [{"code": "1-8", "display": None, "system": "x"}]}},
            "no string display",
        ),
        ({"rsg_codes": ()}, "no RS grouper code"),
        ({"rsg_codes": ("840539006", "38362002")}, "maps to two condition groupers"),
    ],
    ids=["null-display", "no-rs-grouper", "code-in-two-conditions"],
)
def test_a_payload_that_breaks_the_format_is_refused_before_any_write(
    exported: Exported, tmp_path: Path, monkeypatch, capsys, changes: dict[str, Any], message: str
) -> None:
    for name, value in env_for(exported.settings).items():
        monkeypatch.setenv(name, value)
    plan = _bad_plan(exported, **changes)
    monkeypatch.setattr(export_command, "read_plan", lambda *_args, **_kwargs: plan)
    out = tmp_path / "out"
    assert cli.main(["export", "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not out.exists(), "every document is checked before the first file is written"


def _version_row(jurisdiction: str, uuid: str) -> tuple[Any, ...]:
    """A refiner_payload_versions row as read_plan selects it."""
    return (jurisdiction, COVID_URL, uuid, "3.0.0", "COVID-19", "COVID19", 1, 1, True, ["840539006"], {}, [])


def test_folder_names_are_checked() -> None:
    for jurisdiction, uuid in (("S/D", uuid_of(COVID_URL)), ("SD", "../escape"), ("SD", "Upper-Case")):
        with pytest.raises(export_command.InvalidInputError, match="cannot be a folder name"):
            export_command._plan([_version_row(jurisdiction, uuid)], [])
    with pytest.raises(export_command.InvalidInputError, match="share the folder SD"):
        export_command._plan(
            [_version_row("sd", uuid_of(COVID_URL)), _version_row("Sd", uuid_of(COVID_URL))], []
        )
    plan = export_command._plan([_version_row("sd", uuid_of(COVID_URL))], [])
    assert plan.jurisdictions == ["SD"] and plan.payloads[0].jurisdiction == "SD"


def test_progress_on_a_terminal_and_one_summary_line_otherwise(
    exported: Exported, tmp_path: Path, monkeypatch, capsys
) -> None:
    for name, value in env_for(exported.settings).items():
        monkeypatch.setenv(name, value)
    plain = tmp_path / "plain"
    assert cli.main(["export", "--out", str(plain)]) == 0  # stderr is not a terminal here
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.count("\n") == 1 and captured.out.startswith("exported 4 payload(s)")
    files = len(tree(plain))
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat the captured stderr as a terminal
    shown = tmp_path / "shown"
    result = export_command.run_export(exported.settings, shown, show_progress=True)
    err = capsys.readouterr().err
    assert "exporting" in err and f"{files}/{files}" in err, err
    assert len(result.written) == files
    assert {path: content for path, (content, _m) in tree(shown).items()} == {
        path: content for path, (content, _m) in tree(plain).items()
    }
