"""Deployment settings: TLS (PGSSLMODE / PGSSLROOTCERT) reaches psycopg and dbt alike, the builder's
own database URL, and the TES API key from a file (docs/deployment.md)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import yaml

from loaders.errors import ConfigurationError
from loaders.tes.client import api_key_configured, settings_from_env
from refinery import cli, connection, dbt
from refinery.connection import DatabaseSettings
from refinery.paths import project_root

URL = "postgresql://loader:secret@db.example.org:5433/refinery"


def test_tls_variables_reach_the_settings_conninfo_url_and_dbt_env() -> None:
    settings = connection.configured(
        {"DATABASE_URL": URL, "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/refinery/ca/ca.pem"}
    )
    assert settings is not None
    assert (settings.sslmode, settings.sslrootcert) == ("verify-full", "/etc/refinery/ca/ca.pem")
    params = psycopg.conninfo.conninfo_to_dict(settings.conninfo())
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", "/etc/refinery/ca/ca.pem")
    env = connection.dbt_env(settings)
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", "/etc/refinery/ca/ca.pem")
    # the URL carries them, so a subprocess handed DATABASE_URL keeps them
    assert connection.configured({"DATABASE_URL": settings.url(show_password=True)}) == replace(
        settings, source="DATABASE_URL"
    )
    assert "sslmode=verify-full" in settings.describe()


def test_the_url_says_otherwise_and_pg_variables_carry_tls_too() -> None:
    from_url = connection.configured({"DATABASE_URL": URL + "?sslmode=require", "PGSSLMODE": "verify-full"})
    assert from_url is not None and from_url.sslmode == "require"
    from_variables = connection.configured({"PGHOST": "db", "PGSSLMODE": "verify-ca", "PGSSLROOTCERT": "/ca"})
    assert from_variables is not None
    assert (from_variables.sslmode, from_variables.sslrootcert) == ("verify-ca", "/ca")
    plain = connection.configured({"DATABASE_URL": URL})
    assert plain is not None and plain.tls() == {} and "PGSSLMODE" not in connection.dbt_env(plain)


def test_every_dbt_target_reads_the_tls_variables_and_the_build_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render profiles.yml.example the way dbt does, for each target."""
    from dbt.config.profile import Profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    raw = yaml.safe_load((project_root() / "profiles.yml.example").read_text())
    for name, value in {
        "PGHOST": "db.example.org",
        "PGUSER": "builder",
        "PGPASSWORD": "secret",
        "PGDATABASE": "refinery",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/etc/refinery/ca/ca.pem",
        "REFINERY_BUILD_ROLE": "refiner_builder",
    }.items():
        monkeypatch.setenv(name, value)
    import os

    set_invocation_context(dict(os.environ))
    for target in raw["refinery"]["outputs"]:
        _, rendered = Profile.render_profile(raw["refinery"], "refinery", target, ProfileRenderer({}))
        assert (rendered["sslmode"], rendered["sslrootcert"], rendered["role"]) == (
            "verify-full",
            "/etc/refinery/ca/ca.pem",
            "refiner_builder",
        ), target


def _server_has_ssl(settings: DatabaseSettings) -> bool:
    with psycopg.connect(settings.conninfo()) as conn:
        return conn.execute("show ssl").fetchone()[0] == "on"


def test_a_required_tls_connection_is_refused_by_a_server_without_it(
    database: DatabaseSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against a server without TLS, sslmode=require fails for the loaders and for dbt alike,
    and the same settings with sslmode=disable work: both honour the setting."""
    if _server_has_ssl(database):
        pytest.skip("the test server speaks TLS")
    for name in connection.PG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database.url(show_password=True))
    monkeypatch.setenv("PGSSLMODE", "require")
    assert cli.main(["load", "configurations", "/nonexistent.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SSL" in err, err
    monkeypatch.setenv("REFINERY_BUILD_ROLE", "")
    assert dbt.run(["debug"], replace(database, sslmode="require")).exit_code != 0
    assert dbt.run(["debug"], replace(database, sslmode="disable")).exit_code == 0


def test_the_dbt_commands_use_the_build_url_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("REFINERY_BUILD_DATABASE_URL", "postgresql://builder:other@db.example.org/refinery")
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    build = connection.resolve_build()
    assert (build.user, build.password, build.source, build.sslmode) == (
        "builder",
        "other",
        "REFINERY_BUILD_DATABASE_URL",
        "verify-full",
    )
    assert connection.resolve().user == "loader"
    monkeypatch.delenv("REFINERY_BUILD_DATABASE_URL")
    assert connection.resolve_build().user == "loader"


def test_the_tes_key_comes_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    settings = settings_from_env(environ={"TES_API_KEY_FILE": str(key_file)})
    assert settings.api_key == "s3cret-key"
    assert api_key_configured({"TES_API_KEY_FILE": str(key_file)})
    assert not api_key_configured({"TES_API_KEY_FILE": " "})
    cases = {
        "both": ({"TES_API_KEY": "a", "TES_API_KEY_FILE": str(key_file)}, "set only one"),
        "missing": ({"TES_API_KEY_FILE": str(tmp_path / "nope")}, "cannot be read"),
        "empty": ({"TES_API_KEY_FILE": str(tmp_path / "empty")}, "is empty"),
        "neither": ({}, "TES_API_KEY is not set"),
    }
    (tmp_path / "empty").write_text("\n")
    for case, (environ, message) in cases.items():
        with pytest.raises(ConfigurationError) as caught:
            settings_from_env(environ=environ)
        assert message in str(caught.value), case
        assert "s3cret" not in str(caught.value), case
