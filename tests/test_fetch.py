"""`refinery fetch` against the fake TES server over loopback: faults, idempotency, atomicity, secrecy."""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loaders.tes import classify
from refinery import cli, synthetic
from refinery.testing.fake_tes import FakeTES, Fault

KEY = "tes-key-7f3a9c-never-show-me"
SPEC = synthetic.SyntheticSpec(seed=3, conditions=40, jurisdictions=1, configurations_per_jurisdiction=5)


@pytest.fixture(scope="module")
def valuesets() -> list[dict[str, Any]]:
    return synthetic.generate_valuesets(SPEC)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tiny backoff so the retry tests take milliseconds, not minutes."""
    monkeypatch.setenv("TES_API_KEY", KEY)
    monkeypatch.delenv("TES_API_URL", raising=False)
    monkeypatch.setenv("TES_RETRIES", "3")
    monkeypatch.setenv("TES_BACKOFF_FACTOR", "0.01")
    monkeypatch.setenv("TES_BACKOFF_JITTER", "0.01")
    monkeypatch.setenv("TES_READ_TIMEOUT", "2")
    yield


def _expected(valuesets: list[dict[str, Any]]) -> collections.Counter[tuple[str, str, str]]:
    return collections.Counter(
        (r["url"], r["version"], r["id"]) for r in valuesets if classify.classify(r) is not None
    )


def _written(out: Path) -> collections.Counter[tuple[str, str, str]]:
    found: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for path in sorted(out.glob("*.json")):
        if path.name == "manifest.json":
            continue
        for resource in json.loads(path.read_text(encoding="utf-8"))["valuesets"]:
            found[(resource["url"], resource["version"], resource["id"])] += 1
    return found


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _fetch(base_url: str, out: Path, *extra: str) -> int:
    return cli.main(["fetch", "--out", str(out), "--base-url", base_url, *extra])


def test_faults_every_valueset_exactly_once(
    valuesets: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = {2: Fault.status(429, retry_after=1), 4: Fault.status(503), 6: Fault.drop()}
    out = tmp_path / "tes"
    with FakeTES(valuesets, page_cap=50, api_key=KEY, faults=faults) as tes:
        started = time.monotonic()
        assert _fetch(tes.base_url, out) == 0
        elapsed = time.monotonic() - started
        requests = tes.requests
    statuses = [request.status for request in requests]
    assert statuses[1] == 429 and statuses[3] == 503 and statuses[5] is None
    assert elapsed >= 1.0, "Retry-After: 1 was not honoured"
    # the first request searches; every later one follows an opaque next link
    assert requests[0].query["_count"] == ["250"] and requests[0].path.endswith("/ValueSet")
    assert all("_page" in request.query for request in requests[1:])
    expected = _expected(valuesets)
    assert len(expected) > 150  # several pages at 50 per page
    written = _written(out)
    assert written == expected
    assert set(written.values()) == {1}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["record_count"] == len(expected)
    assert manifest["totals"]["ignored_count"] == sum(classify.classify(r) is None for r in valuesets) > 0
    printed = capsys.readouterr()
    assert f"fetched {len(valuesets)} ValueSets" in printed.out
    assert '"event": "retry"' in printed.err  # structured log lines (not a TTY)


def test_second_run_changes_nothing(
    valuesets: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tes"
    with FakeTES(valuesets, page_cap=50, api_key=KEY) as tes:
        assert _fetch(tes.base_url, out) == 0
        before = _snapshot(out)
        inode = out.stat().st_ino
        capsys.readouterr()
        time.sleep(0.02)
        assert _fetch(tes.base_url, out) == 0
        assert "no changes" in capsys.readouterr().out
    assert _snapshot(out) == before
    assert out.stat().st_ino == inode and not list(tmp_path.glob(".tes.*"))


def test_changes_are_detected_and_unchanged_files_keep_their_mtime(
    valuesets: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tes"
    with FakeTES(valuesets, page_cap=50, api_key=KEY) as tes:
        assert _fetch(tes.base_url, out) == 0
    before = _snapshot(out)
    (out / "notes.txt").write_text("operator notes")
    acg = {r["version"] for r in valuesets if classify.classify(r) == "additional_context_grouper"}
    dropped = [
        r
        for r in valuesets
        if classify.classify(r) != "additional_context_grouper" or r["version"] != min(acg)
    ]
    changed = [dict(r) for r in dropped]
    target = next(i for i, r in enumerate(changed) if r["version"] == "1.0.0")
    changed[target] = {**changed[target], "title": changed[target]["title"] + " (revised)"}
    capsys.readouterr()
    with FakeTES(changed, page_cap=50, api_key=KEY) as tes:
        assert _fetch(tes.base_url, out) == 0
    printed = capsys.readouterr().out
    after = _snapshot(out)
    assert "updated  condition_grouper_1.0.0.json" in printed
    assert f"deleted  additional_context_grouper_{min(acg)}.json" in printed
    assert f"additional_context_grouper_{min(acg)}.json" not in after
    assert after["notes.txt"][0] == b"operator notes"
    untouched = [name for name in before if name.startswith("reporting_spec_grouper")]
    assert untouched and all(after[name] == before[name] for name in untouched)
    assert after["condition_grouper_1.0.0.json"] != before["condition_grouper_1.0.0.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {name for name in after if name not in ("manifest.json", "notes.txt")}


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(503),
        Fault.drop(),
        Fault.status(500),
        Fault.loop(),
        Fault.expired(),
        Fault.invalid_json(),
        Fault.truncate(),
        Fault.empty(),
    ],
    ids=lambda f: f.kind + str(f.status_code),
)
def test_failing_server_leaves_files_untouched(
    valuesets: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: Fault
) -> None:
    out = tmp_path / "tes"
    with FakeTES(valuesets, page_cap=50, api_key=KEY) as tes:
        assert _fetch(tes.base_url, out) == 0
        before = _snapshot(out)
        capsys.readouterr()
        tes.set_faults(always=fault)  # the server now fails for good
        code = _fetch(tes.base_url, out)
    printed = capsys.readouterr()
    assert code == 5
    errors = [line for line in printed.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in printed.err
    assert _snapshot(out) == before
    assert not list(tmp_path.glob(".tes.*"))


def test_failing_mid_fetch_on_first_run_creates_nothing(
    valuesets: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "tes"
    with FakeTES(
        valuesets,
        page_cap=50,
        api_key=KEY,
        faults=lambda number, path: Fault.status(502) if number >= 3 else None,
    ) as tes:
        assert _fetch(tes.base_url, out) == 5
        assert len(tes.requests) == 2 + 4  # two pages, then one request and three retries
    assert not out.exists() and not list(tmp_path.iterdir())


def test_recoverable_body_faults_and_expiry(
    valuesets: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TES_READ_TIMEOUT", "0.5")
    faults = {2: Fault.truncate(), 3: Fault.invalid_json(), 5: Fault.expired(), 7: Fault.slow(1.5)}
    out = tmp_path / "tes"
    with FakeTES(valuesets, page_cap=40, api_key=KEY, faults=faults, relative_links=True) as tes:
        assert _fetch(tes.base_url, out) == 0
        first_pages = [r for r in tes.requests if r.path.endswith("/ValueSet")]
    assert len(first_pages) == 2  # the 410 restarted the search once
    assert _written(out) == _expected(valuesets)


def test_page_size_smaller_than_asked_and_dry_run(
    valuesets: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tes"
    with FakeTES(valuesets, page_cap=17, api_key=KEY) as tes:
        assert _fetch(tes.base_url, out, "--dry-run", "--page-size", "500") == 0
        assert tes.requests[0].query["_count"] == ["500"]
        assert len(tes.requests) == -(-len(valuesets) // 17)
    assert "would change" in capsys.readouterr().out
    assert not out.exists()


def test_invalid_valuesets_are_counted_not_written(valuesets: list[dict[str, Any]], tmp_path: Path) -> None:
    broken = [dict(r) for r in valuesets]
    rs = [i for i, r in enumerate(broken) if classify.classify(r) == "reporting_spec_grouper"]
    bad_url = broken[rs[0]]["url"]
    broken[rs[0]] = {**broken[rs[0]], "compose": {"include": [{"concept": "x"}]}}
    broken[rs[1]] = {key: value for key, value in broken[rs[1]].items() if key != "version"}
    out = tmp_path / "tes"
    with FakeTES(broken, page_cap=100, api_key=KEY) as tes:
        assert _fetch(tes.base_url, out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["error_count"] == 2
    assert {record["url"] for record in manifest["invalid"]} >= {bad_url}
    assert sum(entry["error_count"] for entry in manifest["files"].values()) == 1
    written = _written(out)
    assert sum(written.values()) == len(_expected(valuesets)) - 2
    assert not any(url == bad_url and version == broken[rs[0]]["version"] for url, version, _ in written)


def test_key_never_appears_in_output_logs_or_files(
    valuesets: list[dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "tes"
    faults = {2: Fault.status(429, retry_after=0), 3: Fault.drop(), 5: Fault.truncate()}
    with FakeTES(valuesets, page_cap=50, api_key=KEY, faults=faults) as tes:
        assert _fetch(tes.base_url, out) == 0
        assert all(request.had_key for request in tes.requests)
        tes.set_faults(always=Fault.status(503))
        assert _fetch(tes.base_url, out) == 5
    with FakeTES(valuesets, page_cap=50, api_key="another-key") as tes:
        assert _fetch(tes.base_url, out) == 5  # 403: wrong key
    printed = capsys.readouterr()
    assert "refused the API key" in printed.err
    assert printed.out and printed.err
    for text in (printed.out, printed.err, caplog.text):
        assert KEY not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_missing_key_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TES_API_KEY")
    assert _fetch("http://127.0.0.1:9/api/fhir", tmp_path / "tes") == 2
    assert "TES_API_KEY is not set" in capsys.readouterr().err
    assert not (tmp_path / "tes").exists()


def test_cross_origin_next_link_is_refused(
    valuesets: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeTES(valuesets, page_cap=50, api_key=KEY) as tes:
        other = tes.base_url.replace("127.0.0.1", "localhost")
        # ask the server under another name: its next links point at 127.0.0.1
        assert _fetch(other, tmp_path / "tes") == 5
        assert len(tes.requests) == 1
    assert "another origin" in capsys.readouterr().err


def test_an_empty_answer_does_not_wipe_a_previous_fetch(
    valuesets: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tes"
    with FakeTES(valuesets, page_cap=100, api_key=KEY) as tes:
        assert _fetch(tes.base_url, out) == 0
    before = _snapshot(out)
    with FakeTES([], api_key=KEY) as tes:
        assert _fetch(tes.base_url, out) == 5
    assert "refusing to empty" in capsys.readouterr().err
    assert _snapshot(out) == before
