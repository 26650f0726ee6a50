"""The benchmark's data: synthetic TES + configurations per scale, a 4th release, and edits."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loaders.tes.files import write as write_tes_files
from refinery import synthetic
from refinery.synthetic import SyntheticSpec

# Scales: "tiny" exists for the smoke test; the three others are the ones the issue names.
SCALES: dict[str, SyntheticSpec] = {
    "tiny": SyntheticSpec(jurisdictions=2, conditions=12, configurations_per_jurisdiction=10),
    "small": SyntheticSpec(jurisdictions=5),
    "production": SyntheticSpec(jurisdictions=51),
    "large": SyntheticSpec(jurisdictions=500, scale=10.0),
}
DEFAULT_RUNS = {"tiny": 1, "small": 3, "production": 3, "large": 1}


@dataclass(frozen=True)
class Dataset:
    scale: str
    spec: SyntheticSpec
    tes_dir: Path  # releases 1..N (the initial load)
    configurations_file: Path
    next_release_dir: Path  # release N+1 only: the "new TES release" case
    counts: dict[str, int]
    # what a fetch writes once release N+1 is published: releases 1..N+1 in the fetch format,
    # the files of releases 1..N byte-identical to tes_dir's (the operator's commands' case)
    next_fetch_dir: Path | None = None

    @property
    def tes_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.tes_dir.glob("*.json") if p.name != "manifest.json")

    def describe(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "spec": asdict(self.spec),
            "counts": self.counts,
            "tes_bytes": self.tes_bytes,
        }


def prepare(scale: str, workdir: Path) -> Dataset:
    """Generate (or reuse, the generator is deterministic) the data of one scale."""
    spec = SCALES[scale]
    base = workdir / scale
    summary = synthetic.generate(base / "base", spec)
    # The next release: generate one more release and keep only that release's ValueSets.
    more = replace(spec, releases=spec.releases + 1)
    versions = _release_versions(more)
    newest = {versions[-1][0], versions[-1][1]}
    every = synthetic.generate_valuesets(more)
    valuesets = [vs for vs in every if vs.get("version") in newest]
    rendered, ignored = synthetic.render(valuesets)
    next_dir = base / "next-release"
    write_tes_files(next_dir, rendered, ignored_count=ignored, now=datetime(2026, 1, 1, tzinfo=UTC))
    # releases 1..N as generated, plus release N+1 (the generator draws release N differently
    # when it makes N+1 releases, so its full N+1 output would also re-publish release N)
    rendered_all, ignored_all = synthetic.render([*synthetic.generate_valuesets(spec), *valuesets])
    next_fetch = base / "next-fetch"
    write_tes_files(next_fetch, rendered_all, ignored_count=ignored_all, now=datetime(2026, 1, 1, tzinfo=UTC))
    counts = dict(summary.counts)
    counts["next_release_valuesets"] = len(valuesets)
    return Dataset(
        scale, spec, summary.tes_dir, summary.configurations_file, next_dir, counts, next_fetch_dir=next_fetch
    )


def _release_versions(spec: SyntheticSpec) -> list[tuple[str, str]]:
    """(condition grouper version, RS grouper version) of each release of `spec`."""
    return [(r.version, r.rs_version) for r in synthetic._releases(max(1, spec.releases))]


def load_configurations(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8")))


def edit_configurations(
    configurations: list[dict[str, Any]],
    eligible_ids: list[int],
    count: int,
    *,
    seed: int,
    stamp: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A new snapshot with `count` eligible configurations edited (one LOINC code added each):
    (full snapshot, the edited records)."""
    rng = random.Random(seed)
    chosen = set(rng.sample(eligible_ids, min(count, len(eligible_ids))))
    snapshot: list[dict[str, Any]] = []
    edited: list[dict[str, Any]] = []
    for record in configurations:
        if record["id"] in chosen:
            record = copy.deepcopy(record)
            record["loinc_codes"] = [*record.get("loinc_codes", []), f"{90000 + record['id']}-0"]
            record["version"] = int(record.get("version") or 1) + 1
            record["updated_at"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
            edited.append(record)
        snapshot.append(record)
    return snapshot, edited


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def republish(
    tes_dir: Path, children: list[tuple[str, str]], count: int, *, seed: int, out_file: Path
) -> tuple[Path, list[dict[str, Any]]]:
    """`count` of the given RS groupers re-published under the same url|version with one more
    LOINC code each (TES corrections do this): written in the fetch format to `out_file`."""
    from bench.tes_files import LOINC, read_valuesets

    rng = random.Random(seed)
    chosen = set(rng.sample(sorted(set(children)), min(count, len(set(children)))))
    changed: list[dict[str, Any]] = []
    for valueset in read_valuesets([tes_dir]):
        if (valueset.get("url"), valueset.get("version")) not in chosen:
            continue
        valueset = copy.deepcopy(valueset)
        include = valueset.setdefault("compose", {}).setdefault("include", [])
        include.append(
            {
                "system": LOINC,
                "concept": [{"code": f"{98000 + len(changed)}-1", "display": "Re-published addition"}],
            }
        )
        changed.append(valueset)
    version = changed[0]["version"] if changed else "none"
    write_json(
        out_file, {"metadata": {"category": f"reporting_spec_grouper_{version}"}, "valuesets": changed}
    )
    return out_file, changed
