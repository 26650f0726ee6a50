"""The fetch output format: category files, manifest.json, change detection, atomic swap.

One writer for everything that produces TES files (`refinery fetch` and the synthetic generator):

- one file per category and version, ``<category>_<version>.json`` shaped
  ``{"metadata": {"category": "<category>_<version>"}, "valuesets": [...]}`` (the shape of the
  files the eCR Refiner published), ValueSets sorted by url; past ``part_limit`` bytes (30 MiB)
  the file is split into ``<category>_<version>.partNN.json`` files;
- ``manifest.json`` (manifest_version 2): per file sha256, bytes, record_count, error_count, and
  ``last_updated_utc`` — moved only when something changed;
- change detection against the previous manifest *and* the bytes on disk (new / updated /
  deleted); unchanged input rewrites nothing, not even the manifest;
- all-or-nothing: the new folder is assembled in a staging folder next to the target and swapped
  into place with two renames; any failure before the swap leaves the target byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2
PART_LIMIT = 30 * 1024 * 1024
CATEGORIES = ("condition_grouper", "reporting_spec_grouper", "additional_context_grouper")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class RenderedFile:
    """One output file, fully rendered in memory."""

    name: str
    category: str
    version: str
    data: bytes
    record_count: int
    error_count: int = 0
    part: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def manifest_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "category": self.category,
            "version": self.version,
            "sha256": self.sha256,
            "bytes": len(self.data),
            "record_count": self.record_count,
            "error_count": self.error_count,
        }
        if self.part is not None:
            entry["part"] = self.part
        return entry


@dataclass(frozen=True)
class InvalidRecord:
    """A ValueSet that failed validation: counted and reported, never written."""

    category: str | None
    url: str | None
    version: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "url": self.url, "version": self.version, "reason": self.reason}


@dataclass
class Changes:
    """What a write did (or, for a dry run, would do) to the output folder."""

    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    manifest_changed: bool = False
    written: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated or self.deleted or self.manifest_changed)

    def summary(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": len(self.unchanged),
            "changed": self.changed,
            "written": self.written,
        }


def file_stem(category: str, version: str) -> str:
    """``<category>_<version>`` with anything unsafe in a file name replaced by ``_``."""
    return f"{category}_{_UNSAFE.sub('_', version)}"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _document(metadata: Mapping[str, Any], encoded: Sequence[str]) -> bytes:
    return ('{"metadata":' + _dumps(metadata) + ',"valuesets":[' + ",".join(encoded) + "]}\n").encode("utf-8")


def _sort_key(resource: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(resource.get("url", "")), str(resource.get("version", "")), str(resource.get("id", "")))


def render(
    groups: Mapping[tuple[str, str], Iterable[Mapping[str, Any]]],
    errors: Mapping[tuple[str, str], int] | None = None,
    part_limit: int = PART_LIMIT,
) -> list[RenderedFile]:
    """Render ``{(category, version): valuesets}`` into files, sorted by file name.

    ValueSets are sorted by url (then version, id). A file larger than ``part_limit`` bytes is
    split into parts of at most ``part_limit`` bytes each (a single ValueSet larger than the
    limit gets a part of its own). ``errors`` counts invalid records per (category, version);
    they are reported on the file (the first part) of that category and version.
    """
    errors = errors or {}
    files: list[RenderedFile] = []
    for category, version in sorted(groups):
        resources = sorted(groups[(category, version)], key=_sort_key)
        stem = file_stem(category, version)
        label = f"{category}_{version}"
        encoded = [_dumps(resource) for resource in resources]
        whole = _document({"category": label}, encoded)
        error_count = errors.get((category, version), 0)
        if len(whole) <= part_limit:
            files.append(RenderedFile(f"{stem}.json", category, version, whole, len(encoded), error_count))
            continue
        chunks = _split(
            encoded, part_limit, overhead=len(_document({"category": label, "part": 99, "parts": 99}, []))
        )
        for index, chunk in enumerate(chunks, start=1):
            data = _document({"category": label, "part": index, "parts": len(chunks)}, chunk)
            files.append(
                RenderedFile(
                    f"{stem}.part{index:02d}.json",
                    category,
                    version,
                    data,
                    len(chunk),
                    error_count if index == 1 else 0,
                    index,
                )
            )
    files.sort(key=lambda item: item.name)
    return files


def _split(encoded: Sequence[str], limit: int, overhead: int) -> list[list[str]]:
    chunks: list[list[str]] = []
    current: list[str] = []
    size = overhead
    for item in encoded:
        item_size = len(item.encode("utf-8")) + 1
        if current and size + item_size > limit:
            chunks.append(current)
            current, size = [], overhead
        current.append(item)
        size += item_size
    if current:
        chunks.append(current)
    return chunks


def build_manifest(
    files: Sequence[RenderedFile],
    invalid: Sequence[InvalidRecord] = (),
    ignored_count: int = 0,
    last_updated_utc: str | None = None,
) -> dict[str, Any]:
    """The manifest document (``last_updated_utc`` is filled in when written)."""
    ordered_invalid = sorted(
        invalid, key=lambda r: (r.category or "", r.url or "", r.version or "", r.reason)
    )
    return {
        "manifest_version": MANIFEST_VERSION,
        "last_updated_utc": last_updated_utc,
        "totals": {
            "files": len(files),
            "record_count": sum(item.record_count for item in files),
            "error_count": len(ordered_invalid),
            "ignored_count": ignored_count,
        },
        "files": {item.name: item.manifest_entry() for item in files},
        "invalid": [record.as_dict() for record in ordered_invalid],
    }


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The manifest in ``out_dir``, or None when there is none (or it is unreadable)."""
    path = out_dir / MANIFEST_NAME
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _sha256_file(path: Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _comparable(manifest: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    return {key: value for key, value in manifest.items() if key != "last_updated_utc"}


def plan(out_dir: Path, files: Sequence[RenderedFile], manifest: Mapping[str, Any]) -> Changes:
    """Compare the rendered files and manifest with what ``out_dir`` holds now."""
    previous = read_manifest(out_dir)
    previous_files: Mapping[str, Any] = (previous or {}).get("files") or {}
    if not isinstance(previous_files, Mapping):
        previous_files = {}
    changes = Changes()
    for item in files:
        old = previous_files.get(item.name)
        if old is None:
            changes.new.append(item.name)
        elif (
            not isinstance(old, Mapping)
            or old.get("sha256") != item.sha256
            or _sha256_file(out_dir / item.name) != item.sha256
        ):
            changes.updated.append(item.name)
        else:
            changes.unchanged.append(item.name)
    names = {item.name for item in files}
    changes.deleted = sorted(name for name in previous_files if name not in names)
    changes.manifest_changed = _comparable(previous) != _comparable(manifest)
    return changes


def write(
    out_dir: Path,
    files: Sequence[RenderedFile],
    *,
    invalid: Sequence[InvalidRecord] = (),
    ignored_count: int = 0,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Changes:
    """Make ``out_dir`` hold exactly ``files`` plus the manifest, all or nothing.

    Nothing is touched when nothing changed (or on a dry run). Otherwise the new folder is built
    next to ``out_dir`` (unchanged files hard-linked, so they keep their bytes and mtimes; files
    the manifest never listed are carried over) and swapped in with two renames.
    """
    names = [item.name for item in files]
    if len(set(names)) != len(names) or MANIFEST_NAME in names:
        raise ValueError("duplicate output file names")
    out_dir = Path(os.path.abspath(out_dir))
    manifest = build_manifest(files, invalid, ignored_count)
    changes = plan(out_dir, files, manifest)
    if dry_run or not changes.changed:
        return changes
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    manifest["last_updated_utc"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    previous_files = set((read_manifest(out_dir) or {}).get("files") or {})
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        os.chmod(staging, (out_dir.stat().st_mode & 0o7777) if out_dir.is_dir() else 0o755)
        unchanged = set(changes.unchanged)
        for item in files:
            target = staging / item.name
            if item.name in unchanged:
                _link_or_copy(out_dir / item.name, target)
            else:
                _write_bytes(target, item.data)
        if out_dir.is_dir():
            _carry_over(out_dir, staging, keep_out=previous_files | set(names) | {MANIFEST_NAME})
        _write_bytes(
            staging / MANIFEST_NAME,
            (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8"),
        )
        _fsync_dir(staging)
        _swap(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    changes.written = True
    return changes


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _carry_over(out_dir: Path, staging: Path, keep_out: set[str]) -> None:
    """Keep files in ``out_dir`` that are not ours (never listed in a manifest)."""
    for entry in sorted(out_dir.iterdir()):
        if entry.name in keep_out:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, staging / entry.name, symlinks=True)
        else:
            _link_or_copy(entry, staging / entry.name)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap(staging: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.rename(staging, out_dir)
        _fsync_dir(out_dir.parent)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    retired.rmdir()
    os.rename(out_dir, retired)
    try:
        os.rename(staging, out_dir)
    except OSError:
        os.rename(retired, out_dir)
        raise
    _fsync_dir(out_dir.parent)
    shutil.rmtree(retired, ignore_errors=True)
