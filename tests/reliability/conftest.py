"""One database per reliability module (dbt builds are batched per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refinery.connection import DatabaseSettings
from tests.conftest import create_database, drop_database


@pytest.fixture(scope="module")
def module_database(server: DatabaseSettings) -> Iterator[DatabaseSettings]:
    settings = create_database(server, "refinery_rel")
    try:
        yield settings
    finally:
        drop_database(server, settings)
