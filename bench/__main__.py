"""`python -m bench --scale tiny|small|production|large [--server postgres|embedded] [--runs N]`.

The default suite times the commands an operator runs (bench/commands.py) and writes
`<scale>-<server>.json/.md` and the combined README.md; `--suite nodes` is the per-node benchmark
(bench/run.py: `<scale>.json/.md`, nodes.md and the plot); `--report-only` rewrites every table
from the stored JSON without measuring.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import commands_report, report
from bench.commands import EMBEDDED_HOME, EMBEDDED_PORT, SERVERS
from bench.data import DEFAULT_RUNS, SCALES
from loaders.errors import RefineryError

COMMAND_RUNS = {"tiny": 1, "small": 3, "production": 3, "large": 3}


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time the operator's commands (and, with --suite nodes, dbt's nodes) against the "
        "original row-trigger design, side by side.",
    )
    parser.add_argument(
        "--scale", choices=list(SCALES), default="small", help="data size (tiny is for the smoke test)"
    )
    parser.add_argument(
        "--suite",
        choices=["commands", "nodes"],
        default="commands",
        help="commands: wall clock of `refinery load/build/sync` (default); nodes: per-node timings",
    )
    parser.add_argument(
        "--server",
        choices=list(SERVERS),
        default="postgres",
        help="postgres: DATABASE_URL / PG variables, else 127.0.0.1:5432 (default); embedded: the "
        "embedded default the CLI starts (commands suite only)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs to take the median of (commands: 3, 1 for tiny; nodes: 3, 1 for large and tiny)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="where the JSON, the tables and README.md go (default bench/results)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="generated data and dbt artifacts (default: a temporary folder)",
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite the tables from stored JSON")
    parser.add_argument(
        "--embedded-home",
        type=Path,
        default=EMBEDDED_HOME,
        help=f"REFINERY_HOME of the embedded server (default {EMBEDDED_HOME})",
    )
    parser.add_argument(
        "--embedded-port",
        type=int,
        default=EMBEDDED_PORT,
        help=f"REFINERY_EMBEDDED_PORT of the embedded server (default {EMBEDDED_PORT})",
    )
    parser.add_argument("--lookups", type=int, default=10_000, help="nodes suite: cache lookups timed")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    parser.add_argument(
        "--working-tree",
        action="store_true",
        help="benchmark the dbt project as it is on disk (default: the committed HEAD)",
    )
    return parser.parse_args(argv)


def _log(line: str) -> None:
    print(line, flush=True)


def _measure(args: argparse.Namespace, runs: int, workdir: Path) -> dict[str, Any]:
    if args.suite == "nodes":
        from bench.run import run_scale

        return run_scale(
            args.scale,
            runs,
            workdir,
            lookup_count=args.lookups,
            keep=args.keep,
            working_tree=args.working_tree,
            log=_log,
        )
    from bench.commands import run_scale as run_commands

    return run_commands(
        args.scale,
        runs,
        args.server,
        workdir,
        keep=args.keep,
        working_tree=args.working_tree,
        embedded_home=args.embedded_home,
        embedded_port=args.embedded_port,
        log=_log,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    node_tables = (args.out / "nodes.md").exists() or any(
        (args.out / f"{scale}.json").exists() for scale in SCALES
    )
    if args.report_only:
        if node_tables:
            report.write_combined(args.out, with_plot=False)
        for path in commands_report.rewrite_all(args.out, node_tables=node_tables):
            print(f"written: {path}")
        return 0
    if args.suite == "nodes" and args.server != "postgres":
        print("--suite nodes runs on the postgres server only", file=sys.stderr)
        return 2
    runs = args.runs or (DEFAULT_RUNS if args.suite == "nodes" else COMMAND_RUNS)[args.scale]
    if runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.workdir is not None:
            result = _measure(args, runs, args.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="refinery-bench-") as tmp:
                result = _measure(args, runs, Path(tmp))
    except RefineryError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.suite == "nodes":
        json_path, md_path = report.write_scale(result, args.out)
        written = [
            report.write_combined(args.out),
            commands_report.write_combined(args.out, node_tables=True),
        ]
    else:
        json_path, md_path = commands_report.write_result(result, args.out)
        written = [commands_report.write_combined(args.out, node_tables=node_tables)]
    print()
    print(md_path.read_text(encoding="utf-8"))
    print(f"written: {json_path}, {md_path}, {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
