"""Least privilege, proven by connecting as a member of each role after a real build.

refiner_app reads the serving tables only; refiner_analyst reads the marts and snapshots;
refiner_loader writes schema raw and nothing else; refiner_builder owns what dbt built. The
whole pipeline run by these logins, and what each is refused, is tests/test_least_privilege.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from refinery import cli
from refinery.connection import DatabaseSettings
from refinery.synthetic import SyntheticSpec, generate
from tests.conftest import can_execute, create_database, drop_database

SPEC = SyntheticSpec(seed=5, jurisdictions=2, releases=2, conditions=8, configurations_per_jurisdiction=6)
ROLES = ("refiner_app", "refiner_analyst", "refiner_loader", "refiner_builder")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Deployment:
    admin: DatabaseSettings
    logins: dict[str, DatabaseSettings]  # group role -> settings of a login member of it


def _env(patch: pytest.MonkeyPatch, settings: DatabaseSettings) -> None:
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
        patch.delenv(name, raising=False)
    patch.setenv("DATABASE_URL", settings.url(show_password=True))


@pytest.fixture(scope="module")
def deployment(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A built database and one throw-away LOGIN member per group role."""
    admin = create_database(server, "refinery_roles")
    out = tmp_path_factory.mktemp("synthetic-roles")
    summary = generate(out, SPEC)
    suffix = secrets.token_hex(4)
    logins: dict[str, DatabaseSettings] = {}
    with pytest.MonkeyPatch.context() as patch:
        _env(patch, admin)
        try:
            assert cli.main(["load", "tes", str(summary.tes_dir)]) == 0
            assert cli.main(["load", "configurations", str(summary.configurations_file)]) == 0
            assert cli.main(["build"]) == 0
            with psycopg.connect(server.conninfo(), autocommit=True) as conn:
                for role in ROLES:
                    login = f"{role}_t{suffix}"
                    password = secrets.token_urlsafe(16)
                    conn.execute(
                        sql.SQL("create role {} login password {} in role {}").format(
                            sql.Identifier(login), sql.Literal(password), sql.Identifier(role)
                        )
                    )
                    logins[role] = replace(admin, user=login, password=password)
            yield Deployment(admin, logins)
        finally:
            drop_database(server, admin)
            with psycopg.connect(server.conninfo(), autocommit=True) as conn:
                for settings in logins.values():
                    conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(settings.user)))


def _count(settings: DatabaseSettings, relation: str) -> int:
    with psycopg.connect(settings.conninfo()) as conn:
        return int(conn.execute(f"select count(*) from {relation}").fetchone()[0])


def test_roles_exist_and_cannot_log_in_themselves(deployment: Deployment) -> None:
    with psycopg.connect(deployment.admin.conninfo()) as conn:
        rows = conn.execute(
            "select rolname, rolcanlogin, rolsuper from pg_roles where rolname = any(%s)",
            (list(ROLES),),
        ).fetchall()
    assert sorted(rows) == sorted((role, False, False) for role in ROLES)


def test_app_reads_serving_tables_only(deployment: Deployment) -> None:
    app = deployment.logins["refiner_app"]
    assert _count(app, "refiner.refinement_cache") > 0
    for serving in (
        "refiner.tes_condition_groupers",
        "refiner.tes_reporting_spec_groupers",
        "refiner.configurations",
        "refiner.jurisdictions",
        "refiner.code_systems",
    ):
        assert can_execute(app, f"select 1 from {serving} limit 1"), serving
    for forbidden in (
        "raw.tes_valuesets",
        "raw.configurations",
        "refiner_staging.stg_tes__valuesets",
        "refiner_intermediate.int_configurations_evaluated",
        "refiner.tes_release_changes",
        "refiner.jurisdiction_coverage",
        "refiner.condition_grouper_codes",
        "refiner.refinement_cache__synced_partitions",  # the materialization's state, not data
        "refiner_snapshots.refinement_cache_snapshot",
    ):
        assert not can_execute(app, f"select 1 from {forbidden} limit 1"), forbidden
    assert not can_execute(app, "delete from refiner.refinement_cache")
    assert not can_execute(app, "create table refiner.app_scratch (x int)")


def test_analyst_reads_marts_and_snapshots_not_raw(deployment: Deployment) -> None:
    analyst = deployment.logins["refiner_analyst"]
    assert _count(analyst, "refiner.tes_release_changes") > 0
    assert _count(analyst, "refiner_snapshots.refinement_cache_snapshot") > 0
    for readable in (
        "refiner.refinement_cache",
        "refiner.condition_code_summary",
        "refiner.condition_grouper_codes",
        "refiner.jurisdiction_coverage",
        "refiner.configuration_history",
        "refiner_snapshots.configurations_snapshot",
        "refiner_snapshots.tes_condition_groupers_snapshot",
    ):
        assert can_execute(analyst, f"select 1 from {readable} limit 1"), readable
    for forbidden in ("raw.tes_valuesets", "raw.loads", "refiner_intermediate.int_valueset_concepts"):
        assert not can_execute(analyst, f"select 1 from {forbidden} limit 1"), forbidden
    assert not can_execute(analyst, "update refiner.tes_release_changes set added_count = 0")
    assert not can_execute(analyst, "delete from refiner_snapshots.configurations_snapshot")


def test_loader_writes_raw_only(deployment: Deployment) -> None:
    loader = deployment.logins["refiner_loader"]
    assert can_execute(loader, "insert into raw.loads (kind, status) values ('tes', 'running')")
    assert can_execute(loader, "update raw.tes_valuesets set last_seen_load_id = last_seen_load_id")
    assert can_execute(loader, "delete from raw.configurations")
    assert can_execute(loader, "select count(*) from raw.rejected_records")
    for forbidden in (
        "select 1 from refiner.refinement_cache limit 1",
        "delete from refiner.refinement_cache",
        "insert into refiner.configurations (id) values (-1)",
        "select 1 from refiner_snapshots.configurations_snapshot limit 1",
        "select 1 from refiner_staging.stg_tes__valuesets limit 1",
        "create table refiner.loader_scratch (x int)",
    ):
        assert not can_execute(loader, forbidden), forbidden


def test_grants_survive_a_full_refresh_and_init_is_idempotent(
    deployment: Deployment,
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        _env(patch, deployment.admin)
        assert cli.main(["build", "--full-refresh", "--select=refinement_cache"]) == 0
        assert cli.main(["db", "init"]) == 0
        assert cli.main(["db", "init"]) == 0
    assert _count(deployment.logins["refiner_app"], "refiner.refinement_cache") > 0
    assert not can_execute(deployment.logins["refiner_app"], "select 1 from raw.loads limit 1")
    with psycopg.connect(deployment.admin.conninfo()) as conn:
        owner = conn.execute(
            "select pg_get_userbyid(relowner) from pg_class where oid = 'refiner.refinement_cache'::regclass"
        ).fetchone()
    assert owner == ("refiner_builder",)


def test_serving_tables_have_keys_and_contracts(deployment: Deployment) -> None:
    with psycopg.connect(deployment.admin.conninfo()) as conn:
        keys = dict(
            conn.execute(
                """
                select conrelid::regclass::text,
                       array_agg(attname::text order by array_position(conkey, attnum))
                from pg_constraint
                join pg_attribute on attrelid = conrelid and attnum = any(conkey)
                where contype = 'p' and connamespace = 'refiner'::regnamespace
                group by conrelid
                """
            ).fetchall()
        )
    assert keys["refiner.refinement_cache"] == ["snomed_code", "jurisdiction_id"]
    for grouper in ("tes_reporting_spec_groupers", "tes_condition_groupers"):
        assert keys[f"refiner.{grouper}"] == ["canonical_url", "version"]


def test_loader_role_runs_the_loaders(deployment: Deployment, tmp_path: Path) -> None:
    """`refinery load` works as a least-privilege refiner_loader member (no CREATE needed)."""
    loader = deployment.logins["refiner_loader"]
    snapshot = tmp_path / "configurations.json"
    with psycopg.connect(deployment.admin.conninfo()) as conn:
        rows = conn.execute(
            "select id, jurisdiction_id, child_grouper_url, child_grouper_version from raw.configurations"
        ).fetchall()
    snapshot.write_text(
        json.dumps(
            [
                {"id": i, "jurisdiction_id": j, "child_grouper_url": u, "child_grouper_version": v}
                for i, j, u, v in rows
            ]
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        _env(patch, loader)
        assert cli.main(["load", "configurations", str(snapshot)]) == 0
    with psycopg.connect(deployment.admin.conninfo()) as conn:
        assert conn.execute("select count(*) from raw.configurations").fetchone()[0] == len(rows)
        kinds = conn.execute(
            "select status from raw.loads where kind = 'configurations' order by load_id desc limit 1"
        ).fetchone()
    assert kinds == ("succeeded",)
