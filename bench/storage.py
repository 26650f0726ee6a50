"""`python -m bench.storage`: how the cache's TOAST storage weighs on a first `refinery build`.

Times a first `refinery build` (the command, interpreter start included) and its
refinement_cache node on one server for two or more project folders (e.g. the project as it is
and a copy whose incremental_upsert stores the wide columns `external` where the server lacks
lz4), runs interleaved, each in a fresh copy of one loaded database; prints one JSON line per
run (with the cache's size and its columns' storage and compression) and then the medians per
variant. Results: bench/results/storage.md."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from psycopg import sql

from bench.data import SCALES, prepare
from loaders.land.configurations import load_configurations
from loaders.land.tes import load_tes
from refinery import connection, dbinit
from refinery.connection import DatabaseSettings
from refinery.environ import scoped_environ

CLEARED = (*connection.PG_VARIABLES, "DATABASE_URL", "REFINERY_HOME", "REFINERY_EMBEDDED_PORT")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), default="production")
    parser.add_argument("--server", choices=["postgres", "embedded"], default="postgres")
    parser.add_argument("--embedded-home", type=Path, default=Path("/tmp/refinery-storage-home"))
    parser.add_argument("--embedded-port", type=int, default=55411)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar="LABEL=PROJECT_DIR",
        help="a project folder to build (REFINERY_PROJECT_DIR), under a label; give two or more",
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "refinery-storage")
    return parser.parse_args(argv)


@contextmanager
def admin_settings(args: argparse.Namespace) -> Iterator[DatabaseSettings]:
    if args.server == "postgres":
        configured = connection.configured()
        yield (
            configured.with_database("postgres")
            if configured is not None
            else DatabaseSettings(
                host="127.0.0.1", port=5432, user="postgres", password=None, dbname="postgres", source="local"
            )
        )
        return
    from refinery import embedded

    home = args.embedded_home.resolve()
    with scoped_environ({"REFINERY_HOME": str(home), "REFINERY_EMBEDDED_PORT": str(args.embedded_port)}):
        was_running = embedded.status().running
        state = embedded.up()
        assert state.port is not None
        try:
            yield connection.embedded_settings(state.port).with_database("postgres")
        finally:
            if not was_running:
                embedded.down()


def _execute(admin: DatabaseSettings, statement: sql.Composable) -> None:
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute(statement)


def build_once(
    admin: DatabaseSettings, template: str, label: str, project_dir: Path, workdir: Path
) -> dict[str, Any]:
    """A fresh copy of the loaded database, `refinery build` timed in it, then dropped."""
    name = f"storage_{label}_{uuid.uuid4().hex[:8]}"
    _execute(
        admin,
        sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template)),
    )
    target = workdir / f"target-{label}"
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env |= {
        "DATABASE_URL": admin.with_database(name).url(show_password=True),
        "REFINERY_PROJECT_DIR": str(project_dir),
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(workdir / f"logs-{label}"),
    }
    try:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "refinery.cli", "build"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"refinery build ({label}) exited {done.returncode}: "
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        results = json.loads((target / "run_results.json").read_text())["results"]
        node = next(
            r
            for r in results
            if r["unique_id"].endswith(".refinement_cache") and r["unique_id"].startswith("model.")
        )
        with connection.connect(admin.with_database(name)) as conn:
            size = conn.execute("select pg_total_relation_size('refiner.refinement_cache')").fetchone()[0]
            storage = conn.execute(
                "select string_agg(attname || ':' || attstorage::text"
                " || coalesce(nullif(attcompression::text, ''), '-'), ' '"
                " order by attnum) from pg_attribute where attrelid = 'refiner.refinement_cache'::regclass"
                " and attnum > 0 and not attisdropped"
            ).fetchone()[0]
        return {
            "variant": label,
            "build_wall_s": round(wall, 3),
            "cache_node_s": round(float(node["execution_time"]), 3),
            "cache_bytes": size,
            "columns": storage,
        }
    finally:
        _execute(admin, sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    variants = [tuple(v.split("=", 1)) for v in args.variant]
    args.workdir.mkdir(parents=True, exist_ok=True)
    dataset = prepare(args.scale, args.workdir)
    runs: list[dict[str, Any]] = []
    with admin_settings(args) as admin:
        with connection.connect(admin) as conn:
            server_version = conn.execute("show server_version").fetchone()[0]
            lz4 = conn.execute(
                "select 'lz4' = any(enumvals) from pg_settings where name = 'default_toast_compression'"
            ).fetchone()[0]
        template = f"storage_template_{uuid.uuid4().hex[:8]}"
        _execute(admin, sql.SQL("create database {}").format(sql.Identifier(template)))
        try:
            loaded = admin.with_database(template)
            dbinit.init(loaded)
            load_tes([dataset.tes_dir], loaded)
            load_configurations(dataset.configurations_file, loaded)
            for run in range(args.runs):
                for label, project_dir in variants:
                    result = build_once(admin, template, label, Path(project_dir).resolve(), args.workdir)
                    result |= {
                        "run": run + 1,
                        "server": args.server,
                        "server_version": server_version,
                        "lz4": lz4,
                    }
                    print(json.dumps(result), flush=True)
                    runs.append(result)
        finally:
            _execute(
                admin, sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(template))
            )
    for label, _ in variants:
        mine = [r for r in runs if r["variant"] == label]
        summary = {
            "summary": label,
            "server": args.server,
            "scale": args.scale,
            "runs": len(mine),
            "build_wall_s_median": round(statistics.median(r["build_wall_s"] for r in mine), 2),
            "cache_node_s_median": round(statistics.median(r["cache_node_s"] for r in mine), 2),
            "cache_bytes": mine[-1]["cache_bytes"],
        }
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
