"""`refinery sync`: the scheduled job — fetch (with TES_API_KEY), load what changed, build.

Everything runs under the load lock (held on one connection for the whole run and handed to the
loaders). Each step prints one JSON line to stdout: `{"ts", "run_id", "step", "status",
"seconds", ...counts}`; a failing step prints its line with `"status": "failed"`, `"error"` and
`"exit_code"`, then the error propagates to the CLI (exit 3 bad input, 4 lock busy, 5 TES API
failure, 6 build failure; see docs/scheduling/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg

from loaders.errors import BuildFailedError, InvalidInputError, RefineryError
from loaders.land import lock as load_lock
from loaders.land.ddl import require_schema
from loaders.land.reader import expand_paths
from refinery import connection
from refinery.connection import DatabaseSettings


@dataclass
class StepLog:
    """Prints one JSON object per step."""

    run_id: str
    stream: TextIO = field(default_factory=lambda: sys.stdout)

    def emit(self, step: str, status: str, seconds: float, **fields: Any) -> None:
        record = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "run_id": self.run_id,
            "step": step,
            "status": status,
            "seconds": round(seconds, 3),
            **fields,
        }
        self.stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.stream.flush()

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a step; the block fills the dict with counts (and may set "status")."""
        fields: dict[str, Any] = {}
        started = time.perf_counter()
        try:
            yield fields
        except RefineryError as exc:
            self.emit(
                name,
                "failed",
                time.perf_counter() - started,
                **fields,
                error=str(exc),
                exit_code=exc.exit_code,
            )
            raise
        except Exception as exc:
            self.emit(
                name,
                "failed",
                time.perf_counter() - started,
                **fields,
                error=f"{type(exc).__name__}: {exc}",
                exit_code=1,
            )
            raise
        status = fields.pop("status", "ok")
        self.emit(name, status, time.perf_counter() - started, **fields)


DEFAULT_BUILD_ARGS = ("build",)


@dataclass(frozen=True)
class SyncOptions:
    tes_dir: Path
    configurations: Path | None = None
    lock_timeout: float = 30.0
    # ("build",): the planned build; anything else (tests: ("build", "--select", ...)) runs as given
    build_args: tuple[str, ...] = DEFAULT_BUILD_ARGS
    export_dir: Path | None = None  # `--export DIR`: export after a successful build


def _fetch(options: SyncOptions, environ: Mapping[str, str], fields: dict[str, Any]) -> None:
    from loaders.tes.client import JsonLinesReporter, api_key_configured, settings_from_env

    if not api_key_configured(environ):
        fields.update(status="skipped", reason="TES_API_KEY not set")
        return
    from loaders.tes.fetch import fetch

    settings = settings_from_env(environ=dict(environ))
    result = fetch(options.tes_dir, settings, reporter=JsonLinesReporter(sys.stderr))
    changes = result.changes
    fields.update(
        fetched=result.fetched,
        kept=result.written,
        ignored=result.ignored,
        invalid=result.invalid,
        new_files=len(changes.new),
        updated_files=len(changes.updated),
        deleted_files=len(changes.deleted),
    )


def already_loaded(conn: psycopg.Connection) -> set[str]:
    """sha256 of the files in the latest succeeded TES load."""
    rows = conn.execute(
        """
        with latest as (
            select max(load_id) as load_id
            from raw.loads
            where kind = 'tes' and status = 'succeeded'
        )

        select loaded_file.item ->> 'sha256'
        from raw.loads as loads
        inner join latest on loads.load_id = latest.load_id
        cross join lateral jsonb_array_elements(loads.files) as loaded_file (item)
        """
    ).fetchall()
    return {row[0] for row in rows}


def _file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _counts(result: Any) -> dict[str, Any]:
    """A LoadResult's counts for the step line (the step has its own seconds)."""
    return {key: value for key, value in result.summary().items() if key not in ("seconds", "kind")}


def _load_tes(
    settings: DatabaseSettings,
    options: SyncOptions,
    held: load_lock.DatabaseLock,
    fields: dict[str, Any],
) -> None:
    from loaders.land.tes import load_tes

    if not options.tes_dir.is_dir():
        raise InvalidInputError(
            f"{options.tes_dir}: no TES folder (set TES_API_KEY to fetch into it, or pass --tes-dir)"
        )
    files = expand_paths([options.tes_dir])
    with connection.connect(settings) as conn:
        require_schema(conn)
        seen = already_loaded(conn)
    changed = [path for path in files if _file_sha256(path) not in seen]
    fields.update(files=len(files), changed_files=len(changed))
    if not changed:
        # The latest TES load read exactly these bytes and nothing changed raw.tes_valuesets
        # since: loading them again would be a no-op.
        fields["status"] = "unchanged"
        return
    # Load the whole folder, not only the changed files: it is checked as one consistent set
    # (one content per url|version), and the next sync can then skip every file at once.
    result = load_tes(files, settings, lock_timeout=options.lock_timeout, held_lock=held)
    fields.update(_counts(result))


def _load_configurations(
    settings: DatabaseSettings,
    options: SyncOptions,
    held: load_lock.DatabaseLock,
    fields: dict[str, Any],
) -> None:
    from loaders.land.configurations import load_configurations

    if options.configurations is None:
        fields.update(status="skipped", reason="no --configurations file")
        return
    result = load_configurations(
        options.configurations, settings, lock_timeout=options.lock_timeout, held_lock=held
    )
    fields.update(_counts(result))


def _build_failed(outcome: Any, failed: list[str]) -> BuildFailedError:
    exception = getattr(outcome.result, "exception", None)
    detail = ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "") if failed else ""
    if not detail and exception is not None:
        detail = str(exception).strip().splitlines()[0] if str(exception).strip() else ""
    return BuildFailedError(
        f"dbt build failed (dbt exit {outcome.exit_code})"
        + (f": {detail}" if detail else "")
        + "; the loaded data is committed, the next sync rebuilds"
    )


def _build(settings: DatabaseSettings, options: SyncOptions, fields: dict[str, Any]) -> None:
    """The planned build (refinery/build_plan.py): what changed since the last successful build,
    no dbt at all when nothing did. Other `build_args` (tests) run as given, unplanned."""
    from refinery import build_plan, dbt

    with connection.connect(settings) as conn:
        require_schema(conn)
    quiet = ("--quiet", "--log-format", "json")
    if options.build_args != DEFAULT_BUILD_ARGS:
        with connection.connect(settings) as conn:
            build_plan.record_unplanned(conn, dbt.target_schema())
        outcome = dbt.run([*options.build_args, *quiet], settings)
    else:
        built = build_plan.run_planned(settings, dbt_flags=quiet)
        fields.update(plan=built.plan.kind, reason=built.plan.reason)
        if built.outcome is None:
            fields["status"] = "skipped"
            return
        outcome = built.outcome
        if built.build_id is not None:
            fields["build_id"] = built.build_id
    statuses, failed = build_plan.node_statuses(outcome)
    fields.update(nodes=statuses, dbt_exit_code=outcome.exit_code)
    if outcome.exit_code != 0:
        raise _build_failed(outcome, failed)


def _export(settings: DatabaseSettings, out: Path, fields: dict[str, Any]) -> None:
    from refinery.commands.export import run_export

    result = run_export(settings, out, show_progress=False)
    fields.update(
        out=str(out),
        payloads=result.payloads,
        jurisdictions=result.jurisdictions,
        deactivated=result.deactivated,
        written=len(result.written),
        unchanged=result.unchanged,
    )


def sync(
    settings: DatabaseSettings,
    options: SyncOptions,
    *,
    log: StepLog | None = None,
    environ: Mapping[str, str] | None = None,
    build_settings: DatabaseSettings | None = None,
) -> None:
    """Run every step under one held lock; raise the first failure (already logged).

    `settings` lock and load (a `refiner_loader` login); `build_settings`, when given, build (a
    `refiner_builder` login, `REFINERY_BUILD_DATABASE_URL`), else `settings` do both.
    """
    log = log or StepLog(uuid.uuid4().hex[:12])
    env = os.environ if environ is None else environ
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            with log.step("lock") as fields:
                fields["database"] = settings.describe()
                held = stack.enter_context(load_lock.hold(settings, options.lock_timeout))
            with log.step("fetch") as fields:
                _fetch(options, env, fields)
            with log.step("load_tes") as fields:
                _load_tes(settings, options, held, fields)
            with log.step("load_configurations") as fields:
                _load_configurations(settings, options, held, fields)
            with log.step("build") as fields:
                _build(build_settings or settings, options, fields)
            if options.export_dir is not None:
                with log.step("export") as fields:
                    _export(build_settings or settings, options.export_dir, fields)
    except RefineryError as exc:
        log.emit("sync", "failed", time.perf_counter() - started, exit_code=exc.exit_code)
        raise
    log.emit("sync", "ok", time.perf_counter() - started)


def run(args: argparse.Namespace) -> int:
    settings = connection.resolve()
    build_settings = connection.resolve_build() if os.environ.get(connection.BUILD_URL) else None
    options = SyncOptions(
        tes_dir=Path(args.tes_dir),
        configurations=Path(args.configurations) if args.configurations else None,
        lock_timeout=args.lock_timeout,
        export_dir=Path(args.export) if getattr(args, "export", None) else None,
    )
    sync(settings, options, build_settings=build_settings)
    return 0
