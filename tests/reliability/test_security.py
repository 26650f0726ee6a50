"""Security: the API key goes nowhere, hostile data stays data, roles stay within their grants,
secrets files are git-ignored.

One `refinery sync` (fetch from the fake TES with TES_API_KEY set, load, build) in a subprocess
feeds the whole module: its output, every file it wrote (fetch folder, dbt target and logs) and a
dump of every table of the database (`row_to_json`) are searched for the key; the fake TES serves
an RS grouper with hostile codes and title, and a configuration adds hostile codes; all of them
must reach `refinement_cache` exactly as written. (tests/test_roles.py proves each role's
grants; here only the ways around them: switching role, granting, creating objects.)
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from loaders.tes import classify
from refinery import synthetic
from refinery.connection import DatabaseSettings
from refinery.testing.fake_tes import FakeTES
from tests.conftest import REPO, can_execute
from tests.reliability._helpers import connect, query, refinery, tables, write_json

KEY = f"tes-key-{secrets.token_hex(12)}"
SPEC = synthetic.SyntheticSpec(seed=13, conditions=20, jurisdictions=2, configurations_per_jurisdiction=10)
HOSTILE_CODES = [
    "'); drop table raw.loads; --",
    "$$; drop table refiner.refinement_cache; $$",
    "$tag$ x $tag$",
    "\\N",
    "\\.",
    "a\\b\\\\c",
    '"quoted"',
    "{1,2}",
    "NULL",
    "O'Brien",
    "%s %(x)s {}",
    "{{ var('x') }}",
    "\u202eevil\u202c",
    "🦠🧪",
    "שלום-مرحبا",
]
HOSTILE_TITLE = '\'); drop table raw.loads; -- "x" \\ $$ {{ 7*7 }} \u202eRTL\u202c 🦠\nsecond line\t'


@dataclass(frozen=True)
class Synced:
    settings: DatabaseSettings
    folder: Path
    result: subprocess.CompletedProcess[str]
    rs_grouper: dict[str, Any]
    configuration: dict[str, Any]


@pytest.fixture(scope="module")
def synced(module_database: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Synced:
    folder = tmp_path_factory.mktemp("security")
    summary = synthetic.generate(folder / "synthetic", SPEC)
    configurations = json.loads(summary.configurations_file.read_text())
    chosen = next(c for c in configurations if c["is_active"] and c["jurisdiction_id"] == "AL")
    chosen.update(
        loinc_codes=HOSTILE_CODES, updated_at="2031-01-01T00:00:00Z", display_name_override=HOSTILE_TITLE
    )
    configurations_file = write_json(folder / "configurations.json", configurations)

    valuesets = synthetic.generate_valuesets(SPEC)
    rs_grouper = next(
        v
        for v in valuesets
        if v["url"] == chosen["child_grouper_url"] and v["version"] == chosen["child_grouper_version"]
    )
    rs_grouper["title"] = HOSTILE_TITLE
    rs_grouper["compose"]["include"].append(
        {"system": "urn:example:hostile", "concept": [{"code": code} for code in HOSTILE_CODES]}
    )
    assert classify.validate(rs_grouper) is None, "the hostile RS grouper must be valid FHIR"

    env = {
        "TES_API_KEY": KEY,
        "DBT_TARGET_PATH": str(folder / "target"),
        "DBT_LOG_PATH": str(folder / "logs"),
        "TES_RETRIES": "2",
    }
    with FakeTES(valuesets, page_cap=40, api_key=KEY) as tes:
        env["TES_API_URL"] = tes.base_url
        result = refinery(
            ["sync", "--tes-dir", str(folder / "tes"), "--configurations", str(configurations_file)],
            module_database,
            env=env,
            timeout=900,
        )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return Synced(module_database, folder, result, rs_grouper, chosen)


# --- the API key --------------------------------------------------------------------------------------


def _database_dump(settings: DatabaseSettings) -> Iterator[str]:
    schemas = [
        row[0]
        for row in query(
            settings,
            "select nspname from pg_namespace where nspname not like 'pg\\_%%'"
            " and nspname <> 'information_schema'",
        )
    ]
    with connect(settings) as conn:
        for schema, name in tables(settings, schemas):
            for (text,) in conn.execute(
                sql.SQL("select row_to_json(t)::text from {}.{} as t").format(
                    sql.Identifier(schema), sql.Identifier(name)
                )
            ):
                yield f"{schema}.{name}: {text}"


def test_the_api_key_is_in_no_output_file_or_table(synced: Synced) -> None:
    assert KEY not in synced.result.stdout and KEY not in synced.result.stderr
    steps = [json.loads(line)["step"] for line in synced.result.stdout.splitlines() if line.startswith("{")]
    assert steps[:2] == ["lock", "fetch"] and "build" in steps
    searched = [path for path in synced.folder.rglob("*") if path.is_file()]
    names = {path.name for path in searched}
    assert {"manifest.json", "run_results.json", "dbt.log"} <= names
    assert any(path.suffix == ".sql" for path in searched), "compiled SQL was searched too"
    for path in searched:
        assert KEY.encode() not in path.read_bytes(), path
    rows = 0
    for line in _database_dump(synced.settings):
        rows += 1
        assert KEY not in line, line[:200]
    assert rows > 1000


# --- hostile data ---------------------------------------------------------------------------------------


def test_hostile_codes_and_titles_reach_the_cache_unchanged(synced: Synced) -> None:
    settings, chosen = synced.settings, synced.configuration
    assert query(
        settings,
        "select to_regclass('raw.loads') is not null, to_regclass('refiner.refinement_cache') is not null",
    ) == [(True, True)]
    key = (chosen["child_grouper_url"], chosen["child_grouper_version"])
    stored = query(
        settings, "select resource from raw.tes_valuesets where canonical_url = %s and version = %s", key
    )
    assert stored == [(synced.rs_grouper,)]
    ((display_name, snomed_code, codes),) = query(
        settings,
        "select display_name, snomed_code, codes_by_system from refiner.tes_reporting_spec_groupers"
        " where canonical_url = %s and version = %s",
        (chosen["child_grouper_url"], chosen["child_grouper_version"]),
    )
    assert display_name == HOSTILE_TITLE
    assert sorted(codes["urn:example:hostile"]) == sorted(HOSTILE_CODES)
    ((aggregated, by_system, details),) = query(
        settings,
        "select aggregated_codes, codes_by_system, source_details from refiner.refinement_cache"
        " where snomed_code = %s and jurisdiction_id = 'AL'",
        (snomed_code,),
    )
    assert details["configuration_id"] == chosen["id"]
    assert set(HOSTILE_CODES) <= set(aggregated)
    assert set(HOSTILE_CODES) <= set(by_system["urn:example:hostile"])
    assert set(HOSTILE_CODES) <= set(by_system["loinc"])  # the configuration's additions
    ((override,),) = query(
        settings, "select display_name_override from raw.configurations where id = %s", (chosen["id"],)
    )
    assert override == HOSTILE_TITLE


# --- roles: no way around the grants -------------------------------------------------------------------


@pytest.fixture(scope="module")
def logins(synced: Synced, server: DatabaseSettings) -> Iterator[dict[str, DatabaseSettings]]:
    suffix = secrets.token_hex(4)
    made: dict[str, DatabaseSettings] = {}
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        try:
            for role in ("refiner_app", "refiner_analyst", "refiner_loader"):
                login, password = f"{role}_sec{suffix}", secrets.token_urlsafe(16)
                admin.execute(
                    sql.SQL("create role {} login password {} in role {}").format(
                        sql.Identifier(login), sql.Literal(password), sql.Identifier(role)
                    )
                )
                made[role] = DatabaseSettings(
                    synced.settings.host,
                    synced.settings.port,
                    login,
                    password,
                    synced.settings.dbname,
                    "test",
                )
            yield made
        finally:
            with psycopg.connect(synced.settings.conninfo(), autocommit=True) as inside:
                for settings in made.values():
                    inside.execute(sql.SQL("drop owned by {}").format(sql.Identifier(settings.user)))
            for settings in made.values():
                admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(settings.user)))


def _grant_takes_effect(settings: DatabaseSettings) -> bool:
    """Try to hand SELECT on the cache to everybody. A role holding SELECT without grant option
    gets only a warning ("no privileges were granted"), so check the effect, not the error."""
    with psycopg.connect(settings.conninfo()) as conn:
        try:
            conn.execute("grant select on refiner.refinement_cache to public")
            granted = conn.execute(
                "select has_table_privilege('public', 'refiner.refinement_cache', 'select')"
            ).fetchone()
            return bool(granted and granted[0])
        except psycopg.errors.InsufficientPrivilege:
            return False
        finally:
            conn.rollback()


@pytest.mark.parametrize("role", ["refiner_app", "refiner_analyst", "refiner_loader"])
def test_a_role_cannot_step_outside_its_grants(role: str, logins: dict[str, DatabaseSettings]) -> None:
    me = logins[role]
    others = [other for other in ("refiner_app", "refiner_analyst", "refiner_loader") if other != role]
    for other in others:
        assert not can_execute(me, f"set role {other}"), other
        assert not can_execute(me, f"grant {other} to {me.user}"), other
    assert not can_execute(me, "create table public.scratch (x int)")
    assert not can_execute(me, "create schema scratch")
    assert not can_execute(me, "create table refiner.scratch (x int)")
    assert not can_execute(me, "alter table refiner.refinement_cache add column x int")
    assert not _grant_takes_effect(me)
    assert not can_execute(me, "truncate refiner.refinement_cache")
    assert not can_execute(me, "drop table raw.loads")
    assert not can_execute(me, "select rolpassword from pg_authid limit 1")
    assert not can_execute(me, "copy raw.loads to '/tmp/refinery-escape.csv'")
    assert not can_execute(me, "select pg_read_file('/etc/hostname')")


# --- secrets files and the dependency audit --------------------------------------------------------------


@pytest.mark.parametrize("path", [".env", ".env.production", "profiles.yml", "tes-data/manifest.json"])
def test_secrets_files_are_git_ignored(path: str) -> None:
    checked = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO, check=False)
    assert checked.returncode == 0, f"{path} is not git-ignored"


def test_examples_are_not_ignored() -> None:
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", "profiles.yml.example"], cwd=REPO, check=False
    )
    assert checked.returncode == 1


def test_ci_runs_the_dependency_audit() -> None:
    script = (REPO / ".ci" / "test").read_text()
    assert "pip-audit" in script and "--skip-editable" in script
    assert script.index("ruff check") < script.index("pip-audit") < script.index("python -m pytest")
