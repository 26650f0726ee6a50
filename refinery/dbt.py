"""Run dbt programmatically (dbtRunner) against the resolved database."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loaders.errors import ConfigurationError
from refinery.connection import DatabaseSettings, build_role, dbt_environment
from refinery.environ import scoped_environ
from refinery.paths import project_root, state_dir

# dbt commands that do not touch the database: no role to look up for them
OFFLINE_COMMANDS = frozenset({"parse", "deps", "clean", "list", "ls", "debug"})


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


def threads() -> str:
    """dbt's threads for `refinery` runs (the profile reads `REFINERY_THREADS`): as set, else one
    per usable CPU. On 2 cores a production-scale build took 13.5 to 13.9 s with 2 threads,
    14.0 to 14.9 s with 4 and 18.7 to 19.1 s with 1: more threads than cores only made the
    nodes contend (their summed time grew from 19 s to 24-26 s)."""
    configured = os.environ.get("REFINERY_THREADS")
    if configured is None or configured.strip() == "":
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        return str(max(1, len(usable)))
    if not configured.strip().isdigit() or int(configured) < 1:
        raise ConfigurationError(f"REFINERY_THREADS must be a whole number of at least 1, not {configured!r}")
    return str(int(configured))


def run(args: Sequence[str], settings: DatabaseSettings) -> DbtOutcome:
    """Invoke dbt with the project's folder and profile; extra args pass through.

    dbt acts as `refiner_builder` when the login may (`connection.build_role`), so the built
    relations belong to the group role whichever of its logins built them.
    """
    from dbt.cli.main import dbtRunner

    root = project_root()
    if not (root / "dbt_project.yml").exists():
        raise ConfigurationError(f"no dbt_project.yml in {root} (set REFINERY_PROJECT_DIR)")
    command = list(args)
    full = [*command, "--project-dir", str(root), "--profiles-dir", str(profiles_dir())]
    offline = bool(command) and command[0] in OFFLINE_COMMANDS
    role = "" if offline else build_role(settings)
    with dbt_environment(settings, role), scoped_environ({"REFINERY_THREADS": threads()}):
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
