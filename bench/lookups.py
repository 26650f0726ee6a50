"""Lookups timed one round trip at a time with prepared statements: the cache by key, as the
Refiner does them, and "which conditions and jurisdictions keep code X", as analysts ask it (the
query of docs/analytics.md, on the condition_grouper_codes and configurations marts)."""

from __future__ import annotations

import math
import random
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ANALYTICS_DOC = Path(__file__).resolve().parent.parent / "docs" / "analytics.md"
DOC_CODE = "'94500-6'"  # the example code of the documented query


@dataclass(frozen=True)
class LookupStats:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    misses: int


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation): the value below which `fraction` of samples lie."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered) - 1e-9)))
    return ordered[rank - 1]


def measure(
    conn: psycopg.Connection,
    relation: str,
    keys: Sequence[tuple[str, str]],
    *,
    count: int = 10_000,
    seed: int = 7,
) -> LookupStats:
    """Look up `count` keys drawn at random (with replacement) from `keys`; time each round trip."""
    if not keys:
        raise ValueError(f"no keys to look up in {relation}")
    query = (
        f"select aggregated_codes from {relation} "  # relation is a constant chosen by the bench
        "where snomed_code = %s and jurisdiction_id = %s"
    )
    return _timed(conn, query, list(keys), count=count, seed=seed)


def code_query() -> str:
    """The documented "which conditions and jurisdictions keep code X" query (docs/analytics.md),
    its example code replaced by the parameter %(code)s."""
    blocks = re.findall(r"```sql\n(.*?)```", ANALYTICS_DOC.read_text(), flags=re.S)
    found = [block for block in blocks if block.startswith("-- which conditions and jurisdictions keep")]
    if len(found) != 1 or found[0].count(DOC_CODE) != 2:
        raise ValueError(f"{ANALYTICS_DOC}: no single 'which conditions and jurisdictions keep' query")
    return found[0].replace(DOC_CODE, "%(code)s")


def measure_codes(
    conn: psycopg.Connection, codes: Sequence[str], *, count: int = 1_000, seed: int = 7
) -> LookupStats:
    """Ask "which conditions and jurisdictions keep code X" for `count` codes drawn at random from
    `codes`; misses are codes no row keeps."""
    if not codes:
        raise ValueError("no codes to look up")
    return _timed(conn, code_query(), [{"code": code} for code in codes], count=count, seed=seed, many=True)


def grouper_codes(conn: psycopg.Connection) -> list[str]:
    """Every distinct code of the condition groupers (the analytics mart), sorted."""
    rows = conn.execute("select distinct code from refiner.condition_grouper_codes order by 1").fetchall()
    conn.rollback()
    return [row[0] for row in rows]


def _timed(
    conn: psycopg.Connection,
    query: str,
    params: Sequence[Any],
    *,
    count: int,
    seed: int,
    many: bool = False,
) -> LookupStats:
    rng = random.Random(seed)
    sample = [params[rng.randrange(len(params))] for _ in range(count)]
    fetch = (lambda cur: cur.fetchall() or None) if many else (lambda cur: cur.fetchone())
    timings: list[float] = []
    misses = 0
    with conn.cursor() as cur:
        for item in sample[:50]:  # warm-up: prepare on the server, warm the cache
            cur.execute(query, item, prepare=True)
            fetch(cur)
        for item in sample:
            started = time.perf_counter_ns()
            cur.execute(query, item, prepare=True)
            row = fetch(cur)
            timings.append((time.perf_counter_ns() - started) / 1e6)
            if row is None:
                misses += 1
    conn.rollback()
    return LookupStats(
        count=count,
        p50_ms=statistics.median(timings),
        p99_ms=percentile(timings, 0.99),
        max_ms=max(timings),
        misses=misses,
    )
