"""Cache lookups by key, as the Refiner does them: one prepared statement, one key at a time."""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg


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
    rng = random.Random(seed)
    sample = [keys[rng.randrange(len(keys))] for _ in range(count)]
    query = (
        f"select aggregated_codes from {relation} "  # relation is a constant chosen by the bench
        "where snomed_code = %s and jurisdiction_id = %s"
    )
    timings: list[float] = []
    misses = 0
    with conn.cursor() as cur:
        for key in sample[:50]:  # warm-up: prepare on the server, warm the cache
            cur.execute(query, key, prepare=True)
            cur.fetchone()
        for key in sample:
            started = time.perf_counter_ns()
            cur.execute(query, key, prepare=True)
            row = cur.fetchone()
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
