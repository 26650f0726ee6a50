"""Run dbt programmatically (dbtRunner) against the resolved database."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loaders.connection import DatabaseSettings, dbt_environment
from loaders.errors import ConfigurationError
from loaders.paths import project_root, state_dir


@dataclass(frozen=True)
class DbtOutcome:
    """dbt's exit code (0 success, 1 failures, 2 error) and its result object."""

    exit_code: int
    result: Any


def profiles_dir() -> Path:
    """`DBT_PROFILES_DIR`, else a `profiles.yml` in the project, else `profiles.yml.example`."""
    override = os.environ.get("DBT_PROFILES_DIR")
    root = project_root()
    if override:
        folder = Path(override)
        if not (folder / "profiles.yml").exists():
            raise ConfigurationError(f"DBT_PROFILES_DIR={folder} has no profiles.yml")
        return folder
    if (root / "profiles.yml").exists():
        return root
    example = root / "profiles.yml.example"
    if not example.exists():
        raise ConfigurationError(
            f"no dbt profile: neither {root / 'profiles.yml'} nor {example} exists "
            "(set DBT_PROFILES_DIR to a folder holding profiles.yml)"
        )
    generated = state_dir() / "profiles"
    generated.mkdir(parents=True, exist_ok=True)
    target = generated / "profiles.yml"
    if not target.exists() or target.read_bytes() != example.read_bytes():
        shutil.copyfile(example, target)
    return generated


def target_schema() -> str:
    """The schema of the serving tables (the profile's `schema`)."""
    return os.environ.get("REFINERY_SCHEMA", "refiner")


def target_path() -> Path:
    return Path(os.environ.get("DBT_TARGET_PATH", project_root() / "target"))


def run(args: Sequence[str], settings: DatabaseSettings) -> DbtOutcome:
    """Invoke dbt with the project's folder and profile; extra args pass through."""
    from dbt.cli.main import dbtRunner

    root = project_root()
    if not (root / "dbt_project.yml").exists():
        raise ConfigurationError(f"no dbt_project.yml in {root} (set REFINERY_PROJECT_DIR)")
    command = list(args)
    full = [*command, "--project-dir", str(root), "--profiles-dir", str(profiles_dir())]
    with dbt_environment(settings):
        result = dbtRunner().invoke(full)
    if result.success:
        code = 0
    elif result.exception is not None:
        code = 2
    else:
        code = 1
    return DbtOutcome(code, result)


def run_results() -> dict[str, Any]:
    """The last invocation's `run_results.json`."""
    path = target_path() / "run_results.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigurationError(f"no dbt run results at {path}; run `refinery build` first") from exc
