"""Least privilege end to end: every component runs as its own non-superuser login.

`refinery db init` as the administrator; `refinery load` as a login of `refiner_loader`;
`refinery build` as a login of `refiner_builder`; `refinery sync` with the two credentials
(`DATABASE_URL` for the loads, `REFINERY_BUILD_DATABASE_URL` for the build); reads as logins of
`refiner_app` and `refiner_analyst`. Then, for each role, what it must be refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace

import psycopg
import pytest
from psycopg import sql

from loaders.land.ddl import SCHEMA_VERSION
from refinery import cli
from refinery.connection import DatabaseSettings
from refinery.dbinit import GROUP_ROLES
from refinery.synthetic import SyntheticSpec, SyntheticSummary, generate
from tests.conftest import can_execute, create_database, drop_database

SPEC = SyntheticSpec(seed=11, jurisdictions=2, releases=2, conditions=8, configurations_per_jurisdiction=5)
BUILT_SCHEMAS = ("refiner", "refiner_staging", "refiner_intermediate", "refiner_snapshots")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Pipeline:
    admin: DatabaseSettings
    logins: dict[str, DatabaseSettings]  # group role -> a LOGIN member of it (not a superuser)
    data: SyntheticSummary
    exits: dict[str, int]  # step -> the CLI's exit code


def point_at(
    patch: pytest.MonkeyPatch, settings: DatabaseSettings, build: DatabaseSettings | None = None
) -> None:
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "REFINERY_BUILD_ROLE"):
        patch.delenv(name, raising=False)
    patch.delenv("TES_API_KEY", raising=False)
    patch.setenv("DATABASE_URL", settings.url(show_password=True))
    if build is None:
        patch.delenv("REFINERY_BUILD_DATABASE_URL", raising=False)
    else:
        patch.setenv("REFINERY_BUILD_DATABASE_URL", build.url(show_password=True))


def _make_logins(server: DatabaseSettings, database: DatabaseSettings) -> dict[str, DatabaseSettings]:
    suffix = secrets.token_hex(4)
    logins: dict[str, DatabaseSettings] = {}
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        for role in GROUP_ROLES:
            login, password = f"{role}_lp{suffix}", secrets.token_urlsafe(16)
            conn.execute(
                sql.SQL("create role {} login password {} in role {}").format(
                    sql.Identifier(login), sql.Literal(password), sql.Identifier(role)
                )
            )
            logins[role] = replace(database, user=login, password=password, source="test login")
    return logins


def _drop_logins(
    server: DatabaseSettings, database: DatabaseSettings, logins: dict[str, DatabaseSettings]
) -> None:
    with psycopg.connect(database.conninfo(), autocommit=True) as conn:
        for login in logins.values():
            conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(login.user)))
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        for login in logins.values():
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(login.user)))


@pytest.fixture(scope="module")
def pipeline(server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    admin = create_database(server, "refinery_lp", initialise=False)
    data = generate(tmp_path_factory.mktemp("synthetic-lp"), SPEC)
    logins: dict[str, DatabaseSettings] = {}
    exits: dict[str, int] = {}
    try:
        with pytest.MonkeyPatch.context() as patch:
            point_at(patch, admin)
            exits["init"] = cli.main(["db", "init"])
            logins = _make_logins(server, admin)
            point_at(patch, logins["refiner_loader"])
            exits["load tes"] = cli.main(["load", "tes", str(data.tes_dir)])
            exits["load configurations"] = cli.main(["load", "configurations", str(data.configurations_file)])
            point_at(patch, logins["refiner_builder"])
            exits["build"] = cli.main(["build"])
            # the scheduled job with two credentials: loads as the loader, build as the builder
            point_at(patch, logins["refiner_loader"], build=logins["refiner_builder"])
            exits["sync"] = cli.main(
                ["sync", "--tes-dir", str(data.tes_dir), "--configurations", str(data.configurations_file)]
            )
        yield Pipeline(admin, logins, data, exits)
    finally:
        if logins:
            _drop_logins(server, admin, logins)
        drop_database(server, admin)


def _one(settings: DatabaseSettings, statement: str) -> object:
    with psycopg.connect(settings.conninfo()) as conn:
        return conn.execute(statement).fetchone()[0]


def test_the_whole_pipeline_runs_as_least_privilege_logins(pipeline: Pipeline) -> None:
    assert pipeline.exits == {
        "init": 0,
        "load tes": 0,
        "load configurations": 0,
        "build": 0,
        "sync": 0,
    }
    admin = pipeline.admin
    assert _one(admin, "select max(version) from raw.schema_version") == SCHEMA_VERSION
    loaded_by = _one(admin, "select array_agg(distinct status) from raw.loads")
    assert loaded_by == ["succeeded"]
    app = pipeline.logins["refiner_app"]
    cached = _one(app, "select count(*) from refiner.refinement_cache")
    assert isinstance(cached, int) and cached > 0
    assert cached == _one(admin, "select count(*) from refiner.refinement_cache")
    analyst = pipeline.logins["refiner_analyst"]
    assert _one(analyst, "select count(*) from refiner_snapshots.refinement_cache_snapshot") == cached
    assert isinstance(_one(analyst, "select count(*) from refiner.tes_release_changes"), int)


def test_no_role_or_login_holds_a_dangerous_attribute(pipeline: Pipeline) -> None:
    names = [*GROUP_ROLES, *(login.user for login in pipeline.logins.values())]
    with psycopg.connect(pipeline.admin.conninfo()) as conn:
        rows = conn.execute(
            """
            select rolname, rolcanlogin, rolsuper or rolcreaterole or rolcreatedb or rolbypassrls
            from pg_roles where rolname = any(%s)
            """,
            (names,),
        ).fetchall()
        database_create = conn.execute(
            "select bool_or(has_database_privilege(name, current_database(), 'create'))"
            " from unnest(%s::text[]) as t (name)",
            (names,),
        ).fetchone()[0]
    assert len(rows) == len(names)
    assert {name: (login, risky) for name, login, risky in rows} == {
        **{role: (False, False) for role in GROUP_ROLES},
        **{login.user: (True, False) for login in pipeline.logins.values()},
    }
    assert database_create is False


def test_the_builder_group_owns_everything_built_and_nothing_in_raw(pipeline: Pipeline) -> None:
    with psycopg.connect(pipeline.admin.conninfo()) as conn:
        owners = dict(
            conn.execute(
                """
                select n.nspname, array_agg(distinct pg_get_userbyid(c.relowner))
                from pg_class as c
                inner join pg_namespace as n on c.relnamespace = n.oid
                where n.nspname = any(%s) and c.relkind in ('r', 'v', 'm', 'p')
                group by n.nspname
                """,
                (["raw", *BUILT_SCHEMAS],),
            ).fetchall()
        )
        schema_owners = dict(
            conn.execute(
                "select nspname, pg_get_userbyid(nspowner) from pg_namespace where nspname = any(%s)",
                (["raw", *BUILT_SCHEMAS],),
            ).fetchall()
        )
    for schema in BUILT_SCHEMAS:
        assert owners[schema] == ["refiner_builder"], schema
        assert schema_owners[schema] == "refiner_builder", schema
    assert pipeline.admin.user in owners["raw"] and not set(owners["raw"]) & set(GROUP_ROLES)
    assert schema_owners["raw"] == pipeline.admin.user


def test_loader_is_refused_ddl_in_raw_and_everything_outside_it(pipeline: Pipeline) -> None:
    loader = pipeline.logins["refiner_loader"]
    assert can_execute(loader, "insert into raw.loads (kind, status) values ('tes', 'running')")
    assert can_execute(loader, "delete from raw.configurations")
    for refused in (
        "drop table raw.tes_valuesets",
        "create table raw.loader_scratch (x int)",
        "alter table raw.loads add column x int",
        "truncate raw.tes_valuesets",
        "create index loader_scratch_idx on raw.loads (kind)",
        "insert into raw.schema_version (version, refinery_version) values (99, 'x')",
        "delete from raw.schema_version",
        "select 1 from refiner.refinement_cache limit 1",
        "delete from refiner.refinement_cache",
        "select 1 from refiner_staging.stg_tes__valuesets limit 1",
        "create table refiner.loader_scratch (x int)",
        "create schema loader_scratch",
        "create role loader_made_role",
    ):
        assert not can_execute(loader, refused), refused


def test_builder_is_refused_writing_raw_and_creating_roles(pipeline: Pipeline) -> None:
    builder = pipeline.logins["refiner_builder"]
    assert can_execute(builder, "select count(*) from raw.tes_valuesets")
    assert can_execute(builder, "create table refiner.builder_scratch (x int)")
    for refused in (
        "insert into raw.loads (kind, status) values ('tes', 'running')",
        "update raw.tes_valuesets set version = version",
        "delete from raw.configurations",
        "truncate raw.loads",
        "drop table raw.rejected_records",
        "create table raw.builder_scratch (x int)",
        "delete from raw.schema_version",
        "create role builder_made_role",
        "create schema builder_scratch",
        "grant refiner_loader to current_user",
        "set role refiner_loader",
    ):
        assert not can_execute(builder, refused), refused
    # acting as the group role (as dbt does) changes none of that
    for refused in ("insert into raw.loads (kind, status) values ('tes', 'running')", "create role r"):
        assert not can_execute(builder, f"set role refiner_builder; {refused}"), refused


def test_app_reads_serving_tables_and_is_refused_raw_and_writes(pipeline: Pipeline) -> None:
    app = pipeline.logins["refiner_app"]
    assert can_execute(app, "select 1 from refiner.refinement_cache limit 1")
    assert can_execute(app, "select 1 from refiner.tes_condition_groupers limit 1")
    for refused in (
        "select 1 from raw.tes_valuesets limit 1",
        "select 1 from raw.configurations limit 1",
        "select 1 from raw.schema_version limit 1",
        "delete from refiner.refinement_cache",
        "update refiner.refinement_cache set aggregated_codes = '{}'",
        "insert into refiner.refinement_cache (snomed_code) values ('x')",
        "truncate refiner.refinement_cache",
        "select 1 from refiner.refinement_cache__synced_partitions limit 1",
        "select 1 from refiner_intermediate.int_configurations_evaluated limit 1",
        "select 1 from refiner.tes_release_changes limit 1",
        "create table refiner.app_scratch (x int)",
    ):
        assert not can_execute(app, refused), refused


def test_analyst_reads_marts_and_snapshots_and_is_refused_raw_and_internals(pipeline: Pipeline) -> None:
    analyst = pipeline.logins["refiner_analyst"]
    assert can_execute(analyst, "select 1 from refiner.tes_release_changes limit 1")
    assert can_execute(analyst, "select 1 from refiner_snapshots.configurations_snapshot limit 1")
    for refused in (
        "select 1 from raw.loads limit 1",
        "select 1 from raw.tes_valuesets limit 1",
        "select 1 from refiner_intermediate.int_valueset_concepts limit 1",
        "select 1 from refiner_intermediate.int_valueset_codes_aggregated limit 1",
        "select 1 from refiner.refinement_cache__synced_partitions limit 1",
        "update refiner.tes_release_changes set added_count = 0",
        "delete from refiner_snapshots.refinement_cache_snapshot",
        "create table refiner_snapshots.analyst_scratch (x int)",
    ):
        assert not can_execute(analyst, refused), refused


def test_a_login_of_another_role_cannot_run_the_others_commands(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app's credential cannot load; the loader's cannot build (and creates nothing trying)."""
    loader = pipeline.logins["refiner_loader"]
    with pytest.MonkeyPatch.context() as patch:
        point_at(patch, pipeline.logins["refiner_app"])
        assert cli.main(["load", "configurations", str(pipeline.data.configurations_file)]) == 1
        err = capsys.readouterr().err
        point_at(patch, loader)
        assert cli.main(["build", "--select", "+stg_tes__valuesets"]) == 1
    assert err.startswith("error:") and err.count("\n") == 1 and "permission denied" in err, err
    owned = _one(
        pipeline.admin,
        f"select count(*) from pg_class where relowner = '{loader.user}'::regrole",
    )
    assert owned == 0


def test_a_database_never_initialised_is_named_in_one_line(
    server: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = create_database(server, "refinery_bare", initialise=False)
    data = generate(tmp_path_factory.mktemp("synthetic-bare"), SPEC)
    try:
        with pytest.MonkeyPatch.context() as patch:
            point_at(patch, bare)
            codes = [
                cli.main(["load", "tes", str(data.tes_dir)]),
                cli.main(["load", "configurations", str(data.configurations_file)]),
                cli.main(["build"]),
            ]
        errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert codes == [2, 2, 2]
        assert (
            errors
            == ["error: database not initialised: run `refinery db init` (as its owner or an administrator)"]
            * 3
        )
        with psycopg.connect(bare.conninfo()) as conn:
            assert conn.execute("select to_regclass('raw.loads')").fetchone() == (None,)
    finally:
        drop_database(server, bare)


def test_init_is_idempotent_and_refuses_a_newer_database(
    fresh_database: DatabaseSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        point_at(patch, fresh_database)
        assert cli.main(["db", "init"]) == 0  # conftest initialised it already
        assert "unchanged" in capsys.readouterr().out
        with psycopg.connect(fresh_database.conninfo(), autocommit=True) as conn:
            conn.execute(
                "insert into raw.schema_version (version, refinery_version) values (%s, '99.0')",
                (SCHEMA_VERSION + 1,),
            )
        assert cli.main(["db", "init"]) == 2
        assert cli.main(["load", "configurations", "/nonexistent.json"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 2, errors
    for line in errors:
        assert f"version {SCHEMA_VERSION + 1}, newer than this refinery's {SCHEMA_VERSION}" in line, line
