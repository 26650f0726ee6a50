"""`python -m bench --scale small|production|large [--runs N] [--out bench/results]`."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import report
from bench.data import DEFAULT_RUNS, SCALES
from loaders.errors import RefineryError


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark this project against the original row-trigger design, side by side.",
    )
    parser.add_argument(
        "--scale", choices=list(SCALES), default="small", help="data size (tiny is for the smoke test)"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs to take the median of (default 3; 1 for large and tiny)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="where <scale>.json/.md, README.md and the plot go (default bench/results)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="generated data and dbt artifacts (default: a temporary folder)",
    )
    parser.add_argument("--lookups", type=int, default=10_000, help="cache lookups timed (default 10000)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    parser.add_argument(
        "--working-tree",
        action="store_true",
        help="benchmark the dbt project as it is on disk (default: the committed HEAD)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.run import run_scale

    args = parse(argv)
    runs = args.runs or DEFAULT_RUNS[args.scale]
    if runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        if args.workdir is not None:
            result = run_scale(
                args.scale,
                runs,
                args.workdir,
                lookup_count=args.lookups,
                keep=args.keep,
                working_tree=args.working_tree,
                log=log,
            )
        else:
            with tempfile.TemporaryDirectory(prefix="refinery-bench-") as tmp:
                result = run_scale(
                    args.scale,
                    runs,
                    Path(tmp),
                    lookup_count=args.lookups,
                    keep=args.keep,
                    working_tree=args.working_tree,
                    log=log,
                )
    except RefineryError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    json_path, md_path = report.write_scale(result, args.out)
    combined = report.write_combined(args.out)
    print()
    print(md_path.read_text(encoding="utf-8"))
    print(f"written: {json_path}, {md_path}, {combined}, {args.out / 'cost_vs_scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
