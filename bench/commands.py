"""The commands an operator runs, timed by the wall clock: each one a subprocess of the real CLI.

One run, in fresh databases on one server (PostgreSQL at DATABASE_URL / PG variables / 127.0.0.1:5432,
or the embedded default the CLI starts when nothing is configured):

1. first load + build: `refinery load tes <tes-data>`, `refinery load configurations <file>`,
   `refinery build` (the sum of the three walls);
2. `refinery sync --tes-dir <tes-data> --configurations <file>` with nothing changed;
3. the same sync after one configuration was edited in the snapshot file;
4. the same sync after a fetch wrote the next TES release into <tes-data>;
5. the row-trigger design seeded from the same inputs in a process of its own, fed row by row
   and fed by COPY (`python -m bench.trigger_design`), each in a fresh database.

Every sync is the scheduled job's command line, unchanged from run to run: sync decides from the
TES folder's files (sha256 against the latest TES load) and the configurations snapshot what to
load, as it does for an operator (docs/scheduling/README.md). The ratios are taken within each
run and their median reported with the median walls.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg import sql

from bench import data, project
from bench import trigger_design as td
from bench.data import Dataset
from refinery import connection, embedded
from refinery.connection import DatabaseSettings
from refinery.environ import scoped_environ
from refinery.paths import project_root
from refinery.synthetic import UNKNOWN_JURISDICTION

Log = Any  # a callable taking one str
SERVERS = ("postgres", "embedded")
EMBEDDED_HOME = Path("/tmp/refinery-bench-home")
EMBEDDED_PORT = 55447
CLEARED = (*connection.PG_VARIABLES, "DATABASE_URL", "REFINERY_HOME", "REFINERY_EMBEDDED_PORT")
# the ratios each run computes from its own measurements (numerator, denominator)
RATIOS = {
    "ratio.noop_vs_first": ("cmd.noop_s", "cmd.first_s"),
    "ratio.edit_one_vs_first": ("cmd.edit_one_s", "cmd.first_s"),
    "ratio.new_release_vs_first": ("cmd.new_release_s", "cmd.first_s"),
    "ratio.first_vs_trigger_copy": ("cmd.first_s", "trigger.copy_s"),
    "ratio.first_vs_trigger_rows": ("cmd.first_s", "trigger.rows_s"),
    "ratio.cache_node_vs_trigger_copy_configurations": (
        "cmd.first.cache_node_s",
        "trigger.copy.configurations_s",
    ),
    "ratio.cache_node_vs_trigger_rows_configurations": (
        "cmd.first.cache_node_s",
        "trigger.rows.configurations_s",
    ),
}


class CommandFailed(project.BenchError):
    """A timed command exited non-zero (the message has its command line and output tail)."""


@dataclass
class Server:
    """Where the commands run and how the CLI is pointed there."""

    name: str
    admin: DatabaseSettings  # database `postgres` of that server
    embedded_home: Path | None = None
    embedded_port: int | None = None

    def env(self, base: dict[str, str], dbname: str) -> dict[str, str]:
        """The environment of a `refinery` subprocess using database `dbname`: for `postgres`,
        DATABASE_URL; for `embedded`, nothing but REFINERY_HOME and the port (the CLI's default
        path: it finds or starts the server itself and uses its `refinery` database)."""
        env = {k: v for k, v in base.items() if k not in CLEARED}
        if self.name == "embedded":
            if dbname != embedded.DATABASE:
                raise project.BenchError(f"the embedded default always uses database {embedded.DATABASE}")
            env["REFINERY_HOME"] = str(self.embedded_home)
            env["REFINERY_EMBEDDED_PORT"] = str(self.embedded_port)
        else:
            env["DATABASE_URL"] = self.admin.with_database(dbname).url(show_password=True)
        return env

    def project_database(self, scale: str) -> str:
        return embedded.DATABASE if self.name == "embedded" else f"bench_cmd_{scale}_{uuid.uuid4().hex[:8]}"


def postgres_server() -> Server:
    """DATABASE_URL / the PG variables, else the local 127.0.0.1:5432 as postgres."""
    configured = connection.configured()
    admin = (
        configured.with_database("postgres")
        if configured is not None
        else DatabaseSettings(
            host="127.0.0.1", port=5432, user="postgres", password=None, dbname="postgres", source="local"
        )
    )
    return Server("postgres", admin)


@contextmanager
def embedded_server(home: Path, port: int, log: Log) -> Iterator[Server]:
    """The embedded default under `home` on `port`, started with `refinery db up` (and stopped
    afterwards when this started it)."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env |= {"REFINERY_HOME": str(home), "REFINERY_EMBEDDED_PORT": str(port)}
    with scoped_environ({"REFINERY_HOME": str(home)}):
        was_running = embedded.status().running
    _cli(["db", "up"], env)
    log(f"   embedded server: REFINERY_HOME={home} REFINERY_EMBEDDED_PORT={port}")
    server = Server("embedded", connection.embedded_settings(port).with_database("postgres"), home, port)
    try:
        yield server
    finally:
        if not was_running:
            _cli(["db", "down"], env, check=False)


def _cli(args: Sequence[str], env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "refinery.cli", *args],
        env=_with_pythonpath(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        raise CommandFailed(f"refinery {' '.join(args)} exited {done.returncode}: {_tail(done)}")
    return done


def _with_pythonpath(env: dict[str, str]) -> dict[str, str]:
    """This checkout's packages first (the CLI and the bench run from the same code)."""
    root = str(Path(__file__).resolve().parent.parent)
    current = env.get("PYTHONPATH")
    return env | {"PYTHONPATH": root if not current else f"{root}{os.pathsep}{current}"}


def _tail(done: subprocess.CompletedProcess[str], chars: int = 1500) -> str:
    return ((done.stdout or "")[-chars:] + " | " + (done.stderr or "")[-chars:]).strip()


@dataclass
class Timed:
    """One timed command: its wall seconds and what it printed."""

    args: list[str]
    wall_s: float
    stdout: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # sync's JSON step lines


def timed(args: Sequence[str], env: dict[str, str], cwd: Path) -> Timed:
    """Run `refinery ARGS` as a subprocess and time its wall clock (interpreter start included:
    what the operator waits for)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "refinery.cli", *args],
        env=_with_pythonpath(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise CommandFailed(f"refinery {' '.join(args)} exited {done.returncode}: {_tail(done)}")
    return Timed(list(args), wall, done.stdout, _steps(done.stdout))


def _steps(stdout: str) -> dict[str, dict[str, Any]]:
    """`refinery sync`'s step lines by step name (other lines ignored)."""
    steps: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record and "run_id" in record:
            steps[str(record["step"])] = record
    return steps


@contextmanager
def database(server: Server, name: str, keep: bool) -> Iterator[DatabaseSettings]:
    """A fresh database `name` on the server (dropped first when it exists, e.g. the embedded
    default's `refinery`), dropped afterwards unless `keep`."""
    with connection.connect(server.admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield server.admin.with_database(name)
    finally:
        if not keep:
            with connection.connect(server.admin, autocommit=True) as conn:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _cache_node_s(target: Path) -> float:
    """The refinement_cache model's execution_time in the last dbt invocation's run_results."""
    results = json.loads((target / "run_results.json").read_text(encoding="utf-8"))
    for item in results.get("results", []):
        if item.get("unique_id", "").startswith("model.") and item["unique_id"].endswith(
            f".{project.CACHE_NODE}"
        ):
            return float(item.get("execution_time") or 0.0)
    raise project.BenchError(
        f"the first build did not run {project.CACHE_NODE} ({target / 'run_results.json'})"
    )


def _code_in_cache(settings: DatabaseSettings, jurisdiction: str, code: str) -> bool:
    with connection.connect(settings) as conn:
        row = conn.execute(
            f"select count(*) from {project.CACHE_RELATION} "
            "where jurisdiction_id = %s and %s = any(aggregated_codes)",
            (jurisdiction, code),
        ).fetchone()
    return bool(row and row[0])


def _replace_folder(source: Path, dest: Path) -> None:
    """What a fetch leaves in the TES folder: exactly `source`'s files."""
    for existing in dest.glob("*"):
        if existing.is_file() and not (source / existing.name).exists():
            existing.unlink()
    for file in source.glob("*"):
        if file.is_file():
            shutil.copy2(file, dest / file.name)


def _editable(configurations: list[dict[str, Any]], known: set[str]) -> list[int]:
    """Active configurations of known jurisdictions (their edit must show in the cache)."""
    return [
        int(c["id"])
        for c in configurations
        if c.get("is_active")
        and c.get("jurisdiction_id") in known
        and c.get("jurisdiction_id") != UNKNOWN_JURISDICTION
    ]


def _record_sync(m: dict[str, float], case: str, run: Timed) -> None:
    m[f"cmd.{case}_s"] = run.wall_s
    for step in ("load_tes", "load_configurations", "build"):
        record = run.steps.get(step)
        if record is not None:
            m[f"cmd.{case}.{step}_step_s"] = float(record.get("seconds") or 0.0)


def _step_status(run: Timed) -> dict[str, str]:
    return {name: str(record.get("status")) for name, record in run.steps.items()}


def _build_plan(run: Timed) -> str | None:
    """The plan sync's build step chose (refinery/build_plan.py: nothing, configurations, tes, all)."""
    plan = (run.steps.get("build") or {}).get("plan")
    return None if plan is None else str(plan)


def _models_run(target: Path) -> list[str]:
    """The models the last dbt invocation ran (run_results.json in `target`; none when dbt did
    not start: the caller removes the file before the timed command)."""
    path = target / "run_results.json"
    if not path.exists():
        return []
    results = json.loads(path.read_text(encoding="utf-8")).get("results", [])
    return sorted(
        str(item["unique_id"]) for item in results if str(item.get("unique_id", "")).startswith("model.")
    )


def _timed_sync(args: Sequence[str], env: dict[str, str], folder: Path) -> tuple[Timed, list[str]]:
    """One timed `refinery sync` and the models its build ran."""
    (folder / "target" / "run_results.json").unlink(missing_ok=True)
    run = timed(args, env, folder)
    return run, _models_run(folder / "target")


def trigger_seed(
    feed: str, server: Server, dataset: Dataset, seed_csv: Path, name: str, keep: bool
) -> tuple[float, dict[str, Any]]:
    """The trigger design seeded with one feed in a process of its own: (wall, its phase timings)."""
    with database(server, name, keep) as settings:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.trigger_design",
                "--feed",
                feed,
                "--dsn",
                settings.conninfo(),
                "--tes",
                str(dataset.tes_dir),
                "--configurations",
                str(dataset.configurations_file),
                "--jurisdictions",
                str(seed_csv),
            ],
            env=_with_pythonpath(env),
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise CommandFailed(f"trigger design ({feed}) exited {done.returncode}: {_tail(done)}")
        phases = json.loads(done.stdout.strip().splitlines()[-1])
        with td.connect(settings.conninfo()) as conn:
            phases["cache_keys"] = len(td.cache_keys(conn))
    return wall, phases


def run_once(
    dataset: Dataset, server: Server, project_dir: Path, workdir: Path, index: int, *, keep: bool, log: Log
) -> tuple[dict[str, float], dict[str, Any]]:
    """One run: the operator's commands, then the trigger design's two feeds; (metrics, checks)."""
    m: dict[str, float] = {}
    checks: dict[str, Any] = {}
    folder = workdir / f"{server.name}-run-{index + 1}"
    if folder.exists():
        shutil.rmtree(folder)
    tes_dir = folder / "tes-data"
    shutil.copytree(dataset.tes_dir, tes_dir)
    snapshot = folder / "configurations.json"
    shutil.copy2(dataset.configurations_file, snapshot)
    seed_csv = project_dir / "seeds" / "jurisdictions.csv"
    base_env = dict(os.environ) | {
        "REFINERY_PROJECT_DIR": str(project_dir),
        "DBT_TARGET_PATH": str(folder / "target"),
        "DBT_LOG_PATH": str(folder / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    name = server.project_database(dataset.scale)
    with database(server, name, keep) as settings:
        env = server.env(base_env, name)
        log(f"run {index + 1} on {server.name}: database {name}")
        # 0. the one-time setup of the database, by its owner (timed, not part of the first load:
        # on the embedded default the first command would do it; here both servers do it alike)
        m["cmd.db_init_s"] = timed(["db", "init"], env, folder).wall_s
        # 1. first load + build
        load_tes = timed(["load", "tes", str(tes_dir)], env, folder)
        load_cfg = timed(["load", "configurations", str(snapshot)], env, folder)
        build = timed(["build"], env, folder)
        m["cmd.first.load_tes_s"] = load_tes.wall_s
        m["cmd.first.load_configurations_s"] = load_cfg.wall_s
        m["cmd.first.build_s"] = build.wall_s
        m["cmd.first_s"] = load_tes.wall_s + load_cfg.wall_s + build.wall_s
        m["cmd.first.cache_node_s"] = _cache_node_s(folder / "target")
        log(
            f"  first load + build {m['cmd.first_s']:.2f}s (load tes {load_tes.wall_s:.2f}s, "
            f"configurations {load_cfg.wall_s:.2f}s, build {build.wall_s:.2f}s; "
            f"refinement_cache node {m['cmd.first.cache_node_s']:.2f}s)"
        )
        sync = ["sync", "--tes-dir", str(tes_dir), "--configurations", str(snapshot)]

        # 2. nothing changed
        noop, noop_models = _timed_sync(sync, env, folder)
        _record_sync(m, "noop", noop)
        checks["noop_steps"] = _step_status(noop)
        checks["noop_plan"] = _build_plan(noop)
        checks["noop_models"] = noop_models

        # 3. one configuration edited in the snapshot the job reads
        configurations = data.load_configurations(snapshot)
        known = {ident for ident, _, _ in project.jurisdictions(seed_csv)}
        edited_snapshot, edited = data.edit_configurations(
            configurations, _editable(configurations, known), 1, seed=index, stamp=datetime.now(UTC)
        )
        data.write_json(snapshot, edited_snapshot)
        edit, edit_models = _timed_sync(sync, env, folder)
        _record_sync(m, "edit_one", edit)
        checks["edit_one_steps"] = _step_status(edit)
        checks["edit_one_plan"] = _build_plan(edit)
        checks["edit_one_models"] = edit_models
        checks["edit_visible"] = _code_in_cache(
            settings, str(edited[0]["jurisdiction_id"]), str(edited[0]["loinc_codes"][-1])
        )

        # 4. a fetch wrote the next TES release into the folder
        if dataset.next_fetch_dir is None:
            raise project.BenchError("the dataset has no next fetch (regenerate it)")
        _replace_folder(dataset.next_fetch_dir, tes_dir)
        release, release_models = _timed_sync(sync, env, folder)
        _record_sync(m, "new_release", release)
        checks["new_release_steps"] = _step_status(release)
        checks["new_release_plan"] = _build_plan(release)
        checks["new_release_models"] = release_models
        checks["new_release_loaded"] = int((release.steps.get("load_tes") or {}).get("inserted") or 0)
        log(
            f"  sync: nothing changed {m['cmd.noop_s']:.2f}s, one configuration edited "
            f"{m['cmd.edit_one_s']:.2f}s, new TES release {m['cmd.new_release_s']:.2f}s"
        )

    # 5. the trigger design, same inputs, each feed in a fresh database
    for feed in ("rows", "copy"):
        wall, phases = trigger_seed(
            feed, server, dataset, seed_csv, f"bench_trigger_{feed}_{uuid.uuid4().hex[:8]}", keep
        )
        m[f"trigger.{feed}_s"] = wall
        for phase in ("groupers_s", "references_s", "configurations_s"):
            m[f"trigger.{feed}.{phase}"] = float(phases[phase])
        checks[f"trigger_{feed}_cache_keys"] = phases["cache_keys"]
        log(
            f"  trigger design fed by {feed}: {wall:.2f}s "
            f"(configuration phase {phases['configurations_s']:.2f}s)"
        )
    for ratio_name, (numerator, denominator) in RATIOS.items():
        m[ratio_name] = m[numerator] / m[denominator] if m[denominator] > 0 else 0.0
    return m, checks


def environment(server: Server) -> dict[str, Any]:
    from bench.run import environment as base

    described = base(server.admin)
    described["server"] = server.name
    return described


def run_scale(
    scale: str,
    runs: int,
    server_name: str,
    workdir: Path,
    *,
    keep: bool = False,
    working_tree: bool = False,
    embedded_home: Path = EMBEDDED_HOME,
    embedded_port: int = EMBEDDED_PORT,
    log: Log = print,
) -> dict[str, Any]:
    """Every run of one scale on one server: the document written to `<scale>-<server>.json`."""
    started = time.perf_counter()
    log(f"== {scale} on {server_name}: generating data")
    dataset = data.prepare(scale, workdir / "data")
    log(f"   {dataset.counts} ({dataset.tes_bytes / 1e6:.1f} MB of TES JSON)")
    known = {ident for ident, _, _ in project.jurisdictions()}
    wanted = sorted(
        {str(c["jurisdiction_id"]) for c in data.load_configurations(dataset.configurations_file)}
        - known
        - {UNKNOWN_JURISDICTION}
    )
    dirty = project.uncommitted_project_changes()
    project_dir = project.snapshot_project(workdir / "project", wanted, working_tree=working_tree)
    per_run: list[dict[str, float]] = []
    checks: list[dict[str, Any]] = []

    def measure(server: Server) -> dict[str, Any]:
        for index in range(runs):
            metrics, run_checks = run_once(
                dataset, server, project_dir, workdir / "commands", index, keep=keep, log=log
            )
            per_run.append(metrics)
            checks.append(run_checks)
        return environment(server)

    if server_name == "embedded":
        with embedded_server(embedded_home, embedded_port, log) as server:
            env_doc = measure(server)
    else:
        env_doc = measure(postgres_server())
    return {
        "suite": "commands",
        "scale": scale,
        "server": server_name,
        "runs": runs,
        "dataset": dataset.describe(),
        "environment": env_doc,
        "elapsed_s": time.perf_counter() - started,
        "project_source": "working tree" if working_tree else "git HEAD",
        "project_uncommitted_changes": dirty if working_tree else False,
        "project_root": str(project_root()),
        "jurisdictions_added_to_seed": len(wanted),
        "median": medians(per_run),
        "per_run": per_run,
        "checks": checks,
    }


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    names = sorted({name for run in runs for name in run})
    return {name: statistics.median(run[name] for run in runs if name in run) for name in names}
