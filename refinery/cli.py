"""The `refinery` command: parse arguments, call the work, turn exceptions into exit codes.

Nothing else lives here: each subcommand delegates to the module that owns the work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from loaders.errors import RefineryError

Handler = Callable[[argparse.Namespace], int]


def _err_console() -> Console:
    return Console(stderr=True, highlight=False)


# --- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refinery",
        description="eCR Refiner data layer: fetch and load TES terminology, build the refinement cache.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="generate synthetic TES data, load, build and summarise")
    demo.add_argument("--jurisdictions", type=int, default=5, help="synthetic jurisdictions (default 5)")
    demo.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    demo.add_argument("--out", type=Path, default=None, help="where to write the synthetic files")
    demo.set_defaults(handler=_lazy("demo"))

    db = sub.add_parser("db", help="the database: up, down, status, url, env, init")
    db.add_argument("action", choices=["up", "down", "status", "url", "env", "init"])
    db.add_argument("--show-password", action="store_true", help="print the password in `url`")
    db.set_defaults(handler=_lazy("db"))

    fetch = sub.add_parser("fetch", help="pull active ValueSets from the TES FHIR API into files")
    fetch.add_argument("--out", type=Path, required=True, help="folder for category files and manifest.json")
    fetch.add_argument(
        "--base-url", default=None, help="TES FHIR base URL (default: $TES_API_URL or APHL TES)"
    )
    fetch.add_argument("--dry-run", action="store_true", help="fetch and report changes, write nothing")
    fetch.add_argument("--page-size", type=int, default=250, help="_count asked per page (default 250)")
    fetch.set_defaults(handler=_lazy("fetch"))

    load = sub.add_parser("load", help="land TES JSON or configurations in schema raw")
    load_sub = load.add_subparsers(dest="what", required=True, metavar="WHAT")
    load_tes = load_sub.add_parser("tes", help="load TES ValueSet files or folders")
    load_tes.add_argument("paths", nargs="+", type=Path)
    load_tes.add_argument("--skip-invalid", action="store_true", help="load valid records, reject the rest")
    load_tes.add_argument("--lock-timeout", type=float, default=30.0, help="seconds to wait for the lock")
    load_tes.set_defaults(handler=_lazy("load"))
    load_conf = load_sub.add_parser(
        "configurations", help="replace configurations from a JSON or CSV snapshot"
    )
    load_conf.add_argument("file", type=Path)
    load_conf.add_argument("--lock-timeout", type=float, default=30.0, help="seconds to wait for the lock")
    load_conf.set_defaults(handler=_lazy("load"))

    build = sub.add_parser("build", help="run `dbt build`; extra arguments pass through to dbt")
    build.add_argument(
        "dbt_args", nargs=argparse.REMAINDER, help="e.g. --full-refresh, --select refinement_cache"
    )
    build.set_defaults(handler=_lazy("build"))

    sync = sub.add_parser("sync", help="the scheduled job: fetch (with TES_API_KEY), load changes, build")
    sync.add_argument(
        "--tes-dir", type=Path, default=Path("tes-data"), help="TES files folder (default tes-data)"
    )
    sync.add_argument("--configurations", type=Path, default=None, help="configurations snapshot to load")
    sync.add_argument("--lock-timeout", type=float, default=30.0, help="seconds to wait for the lock")
    sync.add_argument(
        "--export", type=Path, default=None, metavar="DIR", help="then `export --out DIR` after a build"
    )
    sync.set_defaults(handler=_lazy("sync"))

    export = sub.add_parser("export", help="write the payloads as the files today's Refiner reads")
    export.add_argument("--out", type=Path, required=True, help="output folder (gets configurations/...)")
    export.add_argument(
        "--jurisdiction",
        nargs="+",
        action="extend",
        default=None,
        metavar="CODE",
        help="only these jurisdictions' folders (default: every jurisdiction)",
    )
    export.set_defaults(handler=_lazy("export"))

    check = sub.add_parser("check", help="run the sanity checks (dbt tests) and print them as a table")
    check.set_defaults(handler=_lazy("check"))

    docs = sub.add_parser("docs", help="generate the static dbt docs page")
    docs.set_defaults(handler=_lazy("docs"))

    report = sub.add_parser("report", help="charts of release-to-release terminology changes")
    report.add_argument("--out", type=Path, default=Path("target/report"), help="output folder")
    report.set_defaults(handler=_lazy("report"))
    return parser


def _lazy(command: str) -> Handler:
    """The `run` of `refinery.commands.<command>`, imported only when it runs (dbt is slow to import)."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        return int(importlib.import_module(f"refinery.commands.{command}").run(args))

    return handler


def _one_line(text: str) -> str:
    """An error message as one inert line: control characters escaped, rich markup literal.

    Messages quote input (urls, ids, file names); a newline, a terminal escape or a `[/x]` in
    them must neither split the line, drive the terminal nor be taken as markup.
    """
    printable = "".join(
        char if char.isprintable() or char == " " else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
    return escape(printable)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(words)
    if args.command == "build":
        # everything after `build`, in its order (argparse would move `--select x` apart)
        args.dbt_args = words[words.index("build") + 1 :]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = args.handler(args)
    except RefineryError as exc:
        _err_console().print(f"[bold red]error:[/] {_one_line(str(exc))}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        _err_console().print("[bold red]interrupted[/]")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
