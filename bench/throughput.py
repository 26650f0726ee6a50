"""Measure `load_tes` throughput: `python -m bench.throughput [PATH ...]`.

Loads the given TES files (default: the synthetic production-scale data, generated into a
temporary folder) into a scratch database twice — a first load and an unchanged re-run — and
prints MB/s of TES JSON by wall clock and per CPU-second. CPU time counts this process (reading,
hashing, COPY) plus, when the server runs on this machine, the PostgreSQL backend serving the
load (parsing jsonb, writing), so the per-CPU figure stays meaningful on a busy shared machine
where wall-clock time mostly measures the neighbours.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from loaders.land.tes import load_tes
from refinery import connection, dbinit
from refinery.connection import DatabaseSettings


@dataclass(frozen=True)
class Measurement:
    label: str
    megabytes: float
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float | None
    inserted: int
    unchanged: int
    phases: dict[str, float]

    @property
    def mb_per_s_wall(self) -> float:
        return self.megabytes / self.wall_s if self.wall_s else 0.0

    @property
    def mb_per_cpu_s(self) -> float:
        cpu = self.client_cpu_s + (self.server_cpu_s or 0.0)
        return self.megabytes / cpu if cpu else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "mb": round(self.megabytes, 1),
            "wall_s": round(self.wall_s, 3),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "server_cpu_s": None if self.server_cpu_s is None else round(self.server_cpu_s, 3),
            "mb_per_s_wall": round(self.mb_per_s_wall, 1),
            "mb_per_cpu_s": round(self.mb_per_cpu_s, 1),
            "inserted": self.inserted,
            "unchanged": self.unchanged,
            "phases": {name: round(value, 3) for name, value in self.phases.items()},
        }


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds of a local PostgreSQL backend (None when the server is elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def measure(paths: Sequence[Path], settings: DatabaseSettings, label: str) -> Measurement:
    with connection.connect(settings) as conn:
        pid = conn.info.backend_pid
        server_before = _backend_cpu(pid)
        client_before = time.process_time()
        started = time.perf_counter()
        result = load_tes(list(paths), conn)
        wall = time.perf_counter() - started
        client = time.process_time() - client_before
        server_after = _backend_cpu(pid)
    server = None if server_before is None or server_after is None else server_after - server_before
    return Measurement(
        label,
        result.bytes / 1_000_000,
        wall,
        client,
        server,
        result.inserted,
        result.unchanged,
        result.phases,
    )


def _scratch(admin: DatabaseSettings) -> DatabaseSettings:
    name = f"refinery_throughput_{os.getpid()}"
    with connection.connect(admin.with_database("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    scratch = admin.with_database(name)
    dbinit.init(scratch)
    return scratch


def _drop(admin: DatabaseSettings, scratch: DatabaseSettings) -> None:
    with connection.connect(admin.with_database("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(scratch.dbname))
        )


def run(paths: Sequence[Path], settings: DatabaseSettings) -> list[Measurement]:
    """First load and unchanged re-run of `paths` into a scratch database on the same server."""
    scratch = _scratch(settings)
    try:
        return [measure(paths, scratch, "first load"), measure(paths, scratch, "re-run (unchanged)")]
    finally:
        _drop(settings, scratch)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="TES files or folders (default: synthetic)")
    parser.add_argument("--jurisdictions", type=int, default=51, help="synthetic scale (default 51)")
    parser.add_argument("--scale", type=float, default=1.0, help="synthetic size multiplier")
    args = parser.parse_args(argv)
    settings = connection.resolve()
    with tempfile.TemporaryDirectory() as folder:
        paths = list(args.paths)
        if not paths:
            from refinery.synthetic import SyntheticSpec, generate

            spec = SyntheticSpec(jurisdictions=args.jurisdictions, scale=args.scale)
            paths = [generate(Path(folder), spec).tes_dir]
        try:
            results = run(paths, settings)
        except psycopg.Error as exc:
            raise SystemExit(f"measurement failed: {exc}") from exc
    for item in results:
        print(json.dumps(item.as_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
