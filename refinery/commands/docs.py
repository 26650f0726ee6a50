"""`refinery docs`: the generated dbt documentation as one self-contained HTML file."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from loaders.errors import ConfigurationError, RefineryError
from refinery import connection, dbt

STATIC_PAGE = "static_index.html"


def generate(settings: connection.DatabaseSettings) -> Path:
    """Run `dbt docs generate --static` and return the path of the single HTML file."""
    outcome = dbt.run(["docs", "generate", "--static"], settings)
    if outcome.exit_code != 0:
        detail = getattr(outcome.result, "exception", None)
        raise RefineryError(f"dbt docs generate failed{f': {detail}' if detail else ''}")
    page = dbt.target_path() / STATIC_PAGE
    if not page.is_file():
        raise ConfigurationError(f"dbt docs generate finished but wrote no {page}")
    return page.resolve()


def run(args: argparse.Namespace) -> int:
    settings = connection.resolve_build()
    page = generate(settings)
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"dbt docs written to one self-contained file: {page}")
    out.print(f"open it in a browser: file://{page}")
    return 0
