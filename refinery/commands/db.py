"""`refinery db up|down|status|url|env|init`: the database the other commands use.

`init` (refinery/dbinit.py) creates the schemas, raw tables and roles; run once per database
by its owner or an administrator, and again after upgrading refinery.
"""

from __future__ import annotations

import argparse
import shlex

from rich.console import Console

from loaders.errors import ConfigurationError
from refinery import connection, embedded


def run(args: argparse.Namespace) -> int:
    out = Console(highlight=False)
    if args.action == "init":
        from refinery import dbinit

        settings = connection.resolve()
        result = dbinit.init(settings)
        out.print(f"{result.describe()} ({settings.describe()})", soft_wrap=True)
        return 0
    if args.action == "up":
        settings = connection.resolve()
        out.print(f"PostgreSQL ready: {settings.describe()}")
        return 0
    if args.action == "down":
        if connection.configured() is not None:
            out.print("DATABASE_URL / PG variables are set: not stopping a server refinery did not start")
            return 0
        stopped = embedded.down()
        out.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
        return 0
    if args.action == "status":
        settings = connection.configured()
        if settings is not None:
            with connection.connect(settings) as conn:
                version = conn.execute("show server_version").fetchone()[0]
            out.print(f"configured server: {settings.describe()}, PostgreSQL {version}")
            return 0
        state = embedded.status()
        if state.running:
            out.print(
                f"embedded PostgreSQL running: pid {state.pid}, 127.0.0.1:{state.port}, data {state.data_dir}"
            )
            return 0
        out.print(f"embedded PostgreSQL not running (data {state.data_dir})")
        return 2
    if args.action == "url":
        settings = connection.resolve()
        print(settings.url(show_password=args.show_password))
        return 0
    if args.action == "env":
        settings = connection.resolve()
        variables = {**connection.dbt_env(settings), "REFINERY_BUILD_ROLE": connection.build_role(settings)}
        for name, value in variables.items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    raise ConfigurationError(f"unknown db action {args.action!r}")
