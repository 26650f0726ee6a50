"""`refinery fetch`: pull active ValueSets from TES into category files and a manifest.

Fetch everything first (nothing is written while paging), classify and validate each ValueSet,
render the category files, then let ``files.write`` compare with the previous manifest and swap
the folder into place only when something changed. Any failure before the swap leaves the output
folder byte-identical.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loaders.errors import RefineryError, UpstreamError
from loaders.tes import classify, files
from loaders.tes.client import (
    ClientSettings,
    Reporter,
    SearchStats,
    TESClient,
    default_reporter,
)


@dataclass(frozen=True)
class Sorted:
    """ValueSets sorted into categories: what gets written, what is ignored, what is invalid."""

    groups: dict[tuple[str, str], list[dict[str, Any]]]
    ignored: int
    invalid: list[files.InvalidRecord]

    @property
    def valid_count(self) -> int:
        return sum(len(items) for items in self.groups.values())


@dataclass(frozen=True)
class FetchResult:
    fetched: int
    written: int
    ignored: int
    invalid: int
    stats: SearchStats
    changes: files.Changes
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "fetched": self.fetched,
            "valuesets": self.written,
            "ignored": self.ignored,
            "invalid": self.invalid,
            "pages": self.stats.pages,
            "retries": self.stats.retries,
            "restarts": self.stats.restarts,
            "duplicates": self.stats.duplicates,
            **self.changes.summary(),
            "seconds": round(self.seconds, 3),
        }


def sort_valuesets(resources: Iterable[Mapping[str, Any]], validate: bool = True) -> Sorted:
    """Classify and (optionally) validate each ValueSet; triggering ones are only counted."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    invalid: list[files.InvalidRecord] = []
    ignored = 0
    for resource in resources:
        category = classify.classify(resource) if isinstance(resource, Mapping) else None
        if isinstance(resource, Mapping) and category is None:
            ignored += 1
            continue
        reason = classify.validate(resource) if validate else None
        if reason is None and not isinstance(resource, Mapping):
            reason = "not a JSON object"
        if reason is not None:
            mapping = resource if isinstance(resource, Mapping) else {}
            invalid.append(
                files.InvalidRecord(
                    category, _text(mapping.get("url")), _text(mapping.get("version")), reason
                )
            )
            continue
        groups.setdefault((str(category), str(resource["version"])), []).append(dict(resource))
    return Sorted(groups, ignored, invalid)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def fetch(
    out_dir: Path,
    settings: ClientSettings,
    *,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    part_limit: int = files.PART_LIMIT,
) -> FetchResult:
    """Fetch, sort, write (or, on a dry run, only compare). Raises UpstreamError on failure."""
    started = time.monotonic()
    reporter = reporter or default_reporter()
    try:
        reporter.event(
            "start",
            base_url=settings.base_url,
            page_size=settings.page_size,
            out=str(out_dir),
            dry_run=dry_run,
        )
        with TESClient(settings, reporter) as client:
            resources = client.search_valuesets()
            stats = client.stats
        if not resources:
            previous = (files.read_manifest(Path(out_dir)) or {}).get("totals") or {}
            if previous.get("record_count"):
                raise UpstreamError(
                    "TES returned no active ValueSets although the previous fetch had "
                    f"{previous['record_count']}: refusing to empty {out_dir}"
                )
        reporter.event("validate", valuesets=len(resources))
        result = sort_valuesets(resources)
        errors: dict[tuple[str, str], int] = {}
        for record in result.invalid:
            if record.category and record.version:
                key = (record.category, record.version)
                errors[key] = errors.get(key, 0) + 1
        for record in result.invalid:
            reporter.event(
                "invalid",
                category=record.category,
                url=record.url,
                version=record.version,
                reason=record.reason,
            )
        rendered = files.render(result.groups, errors, part_limit=part_limit)
        try:
            changes = files.write(
                out_dir, rendered, invalid=result.invalid, ignored_count=result.ignored, dry_run=dry_run
            )
        except OSError as exc:
            raise RefineryError(
                f"could not write {out_dir}: {exc.strerror or exc} "
                f"({exc.filename or out_dir}); the folder is unchanged"
            ) from None
        outcome = FetchResult(
            len(resources),
            result.valid_count,
            result.ignored,
            len(result.invalid),
            stats,
            changes,
            time.monotonic() - started,
        )
        reporter.event("done", **outcome.as_dict())
        return outcome
    finally:
        reporter.close()
