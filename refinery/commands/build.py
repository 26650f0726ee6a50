"""`refinery build [dbt args]`: `dbt build` with the project's profile."""

from __future__ import annotations

import argparse

from loaders.errors import ConfigurationError
from loaders.land.ddl import require_schema
from refinery import connection, dbt


def run(args: argparse.Namespace) -> int:
    dbt.profiles_dir()  # a missing profile is reported before the database is touched
    settings = connection.resolve_build()
    with connection.connect(settings) as conn:
        require_schema(conn)
    outcome = dbt.run(["build", *args.dbt_args], settings)
    exception = getattr(outcome.result, "exception", None)
    if outcome.exit_code == 2 and exception is not None:
        lines = str(exception).strip().splitlines()
        raise ConfigurationError(f"dbt could not run: {lines[0] if lines else type(exception).__name__}")
    return outcome.exit_code
