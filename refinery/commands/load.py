"""`refinery load tes|configurations`: land files in schema `raw` through the loaders."""

from __future__ import annotations

import argparse

from loaders.land.configurations import load_configurations
from loaders.land.tes import load_tes
from refinery import connection


def run(args: argparse.Namespace) -> int:
    settings = connection.resolve()
    if args.what == "tes":
        result = load_tes(
            args.paths, settings, skip_invalid=args.skip_invalid, lock_timeout=args.lock_timeout
        )
    else:
        result = load_configurations(args.file, settings, lock_timeout=args.lock_timeout)
    print(result.describe())
    return 0
