"""Where the project and its local state live."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The dbt project folder (holds dbt_project.yml).

    `REFINERY_PROJECT_DIR` wins; otherwise the checkout this package was installed from
    (editable install), otherwise the current directory.
    """
    override = os.environ.get("REFINERY_PROJECT_DIR")
    if override:
        return Path(override).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "dbt_project.yml").exists():
        return here
    return Path.cwd().resolve()


def state_dir() -> Path:
    """Local state (embedded server data, generated profile): `REFINERY_HOME` or `.refinery/`."""
    override = os.environ.get("REFINERY_HOME")
    return Path(override).resolve() if override else project_root() / ".refinery"
