"""`refinery fetch`: pull active ValueSets from TES into category files and a manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from loaders.tes.client import settings_from_env
from loaders.tes.fetch import fetch


def run(args: argparse.Namespace) -> int:
    settings = settings_from_env(args.base_url, args.page_size)
    result = fetch(Path(args.out), settings, dry_run=args.dry_run)
    changes = result.changes
    verb = "would change" if args.dry_run else "changed"
    state = (
        f"{verb}: {len(changes.new)} new, {len(changes.updated)} updated, "
        f"{len(changes.deleted)} deleted, {len(changes.unchanged)} unchanged files"
        if changes.changed
        else "no changes"
    )
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"fetched {result.fetched} ValueSets in {result.stats.pages} pages "
        f"({result.written} kept, {result.ignored} triggering ignored, "
        f"{result.invalid} invalid, {result.stats.retries} retries) "
        f"→ {args.out}: {state}"
    )
    for name in changes.new:
        console.print(f"  new      {name}")
    for name in changes.updated:
        console.print(f"  updated  {name}")
    for name in changes.deleted:
        console.print(f"  deleted  {name}")
    return 0
