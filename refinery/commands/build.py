"""`refinery build [dbt args]`: `dbt build` with the project's profile, planned from the database.

With no arguments (or only `--full-refresh`) the build is planned (refinery/build_plan.py): it
runs what changed since the last successful build recorded in the database, nothing at all when
nothing did, and records itself when it succeeds. Any other dbt arguments (`--select ...`) run
`dbt build` with them as given, unplanned; the next planned build then runs everything.
"""

from __future__ import annotations

import argparse

from loaders.errors import ConfigurationError
from loaders.land.ddl import require_schema
from refinery import build_plan, connection, dbt

PLANNED_ARGS = {"--full-refresh"}


def is_planned(dbt_args: list[str]) -> bool:
    """Whether `refinery build <dbt_args>` is a planned build (no selection of its own)."""
    return set(dbt_args) <= PLANNED_ARGS


def _raise_if_dbt_could_not_run(outcome: dbt.DbtOutcome) -> None:
    exception = getattr(outcome.result, "exception", None)
    if outcome.exit_code == 2 and exception is not None:
        lines = str(exception).strip().splitlines()
        raise ConfigurationError(f"dbt could not run: {lines[0] if lines else type(exception).__name__}")


def run(args: argparse.Namespace) -> int:
    dbt.profiles_dir()  # a missing profile is reported before the database is touched
    settings = connection.resolve_build()
    with connection.connect(settings) as conn:
        require_schema(conn)
    dbt_args = list(args.dbt_args)
    if not is_planned(dbt_args):
        with connection.connect(settings) as conn:
            build_plan.record_unplanned(conn, dbt.target_schema())
        outcome = dbt.run(["build", *dbt_args], settings)
        _raise_if_dbt_could_not_run(outcome)
        return outcome.exit_code
    built = build_plan.run_planned(
        settings,
        full_refresh="--full-refresh" in dbt_args,
        announce=lambda chosen: print(f"refinery: {chosen.describe()}", flush=True),
    )
    if built.outcome is None:
        return 0
    _raise_if_dbt_could_not_run(built.outcome)
    if built.build_id is not None:
        print(f"refinery: recorded build {built.build_id} ({built.plan.kind})", flush=True)
    return built.exit_code
