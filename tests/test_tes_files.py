"""The category-file writer: parts, manifest, change detection, all-or-nothing swap."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from loaders.tes import files


def _vs(url: str, version: str = "1", size: int = 10) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "url": url,
        "version": version,
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": "http://loinc.org",
                    "concept": [{"code": f"{i}-0", "display": "x" * 50} for i in range(size)],
                }
            ]
        },
    }


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_render_sorts_by_url_and_splits_past_the_limit() -> None:
    group = [_vs(f"http://x/ValueSet/{n:03d}", size=30) for n in reversed(range(40))]
    rendered = files.render({("reporting_spec_grouper", "20250101"): group}, part_limit=20_000)
    assert len(rendered) > 1
    assert [f.name for f in rendered] == [
        f"reporting_spec_grouper_20250101.part{i:02d}.json" for i in range(1, len(rendered) + 1)
    ]
    urls: list[str] = []
    for item in rendered:
        assert len(item.data) <= 20_000
        document = json.loads(item.data)
        assert document["metadata"]["category"] == "reporting_spec_grouper_20250101"
        assert document["metadata"]["parts"] == len(rendered)
        urls.extend(r["url"] for r in document["valuesets"])
        assert item.record_count == len(document["valuesets"])
    assert urls == sorted(urls) and len(urls) == 40
    single = files.render({("condition_grouper", "1.0.0"): group[:2]})
    assert [f.name for f in single] == ["condition_grouper_1.0.0.json"]
    assert json.loads(single[0].data)["metadata"] == {"category": "condition_grouper_1.0.0"}


def test_manifest_and_unchanged_rewrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rendered = files.render(
        {
            ("condition_grouper", "1.0.0"): [_vs("http://x/a")],
            ("reporting_spec_grouper", "2"): [_vs("http://x/b")],
        },
        errors={("condition_grouper", "1.0.0"): 2},
    )
    changes = files.write(out, rendered)
    assert changes.written and changes.new == [f.name for f in rendered]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["manifest_version"] == 2 and manifest["last_updated_utc"].endswith("Z")
    for item in rendered:
        entry = manifest["files"][item.name]
        assert entry["sha256"] == hashlib.sha256((out / item.name).read_bytes()).hexdigest()
        assert entry["record_count"] == 1
    assert manifest["files"]["condition_grouper_1.0.0.json"]["error_count"] == 2
    before = _snapshot(out)
    again = files.write(out, rendered)
    assert not again.changed and not again.written and _snapshot(out) == before
    # a file damaged on disk is repaired even though the manifest still matches
    (out / rendered[0].name).write_bytes(b"{}")
    repaired = files.write(out, rendered)
    assert repaired.updated == [rendered[0].name]
    assert (out / rendered[0].name).read_bytes() == rendered[0].data
    assert (out / rendered[1].name).stat().st_mtime_ns == before[rendered[1].name][1]


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    rendered = files.render({("condition_grouper", "1.0.0"): [_vs("http://x/a")]})
    changes = files.write(tmp_path / "out", rendered, dry_run=True)
    assert changes.new == ["condition_grouper_1.0.0.json"] and not changes.written
    assert not (tmp_path / "out").exists()


def test_failure_during_the_write_leaves_the_folder_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    files.write(out, files.render({("condition_grouper", "1.0.0"): [_vs("http://x/a")]}))
    before = _snapshot(out)
    changed = files.render(
        {
            ("condition_grouper", "1.0.0"): [_vs("http://x/a", size=3)],
            ("condition_grouper", "2.0.0"): [_vs("http://x/a", "2.0.0")],
        }
    )
    real_rename = os.rename
    calls: list[tuple[str, str]] = []

    def failing_rename(source: Any, target: Any) -> None:
        calls.append((str(source), str(target)))
        if len(calls) == 2:  # the staging folder moving into place
            raise OSError(28, "No space left on device")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError):
        files.write(out, changed)
    monkeypatch.setattr(os, "rename", real_rename)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_while_staging_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    files.write(out, files.render({("condition_grouper", "1.0.0"): [_vs("http://x/a")]}))
    before = _snapshot(out)

    def broken(path: Path, data: bytes) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files, "_write_bytes", broken)
    with pytest.raises(OSError):
        files.write(out, files.render({("condition_grouper", "9"): [_vs("http://x/z")]}))
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_file_names_are_safe() -> None:
    assert files.file_stem("condition_grouper", "1.0.0/../x y") == "condition_grouper_1.0.0_.._x_y"
