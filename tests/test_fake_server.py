"""The fake TES server itself behaves like HAPI FHIR paging and injects the faults it advertises."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from refinery.testing.fake_tes import FakeTES, Fault, read_valuesets
from tests.conftest import free_port

KEY = "k-123"


def _valuesets(count: int) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "ValueSet",
            "id": str(n),
            "url": f"http://x/ValueSet/{n}",
            "version": "1",
            "status": "active" if n % 10 else "retired",
        }
        for n in range(count)
    ]


def _get(url: str, key: str | None = KEY) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request(
            "GET",
            f"{parts.path}?{parts.query}" if parts.query else parts.path,
            headers={"X-API-KEY": key} if key else {},
        )
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_pages_capped_with_opaque_next_links() -> None:
    with FakeTES(_valuesets(95), page_cap=20, api_key=KEY) as tes:
        url: str | None = f"{tes.base_url}/ValueSet?status=active&_count=100"
        ids: list[str] = []
        sizes: list[int] = []
        while url:
            status, _, body = _get(url)
            assert status == 200
            bundle = json.loads(body)
            assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
            sizes.append(len(bundle["entry"]))
            ids.extend(entry["resource"]["id"] for entry in bundle["entry"])
            nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
            if nxt:
                assert "_getpagesoffset" not in nxt[0] and "_page=" in nxt[0]
            url = nxt[0] if nxt else None
    assert max(sizes) == 20
    assert ids == [str(n) for n in range(95) if n % 10]  # status=active only, each once


def test_api_key_is_checked() -> None:
    with FakeTES(_valuesets(3), api_key=KEY) as tes:
        assert _get(f"{tes.base_url}/ValueSet", key=None)[0] == 401
        assert _get(f"{tes.base_url}/ValueSet", key="wrong")[0] == 403
        assert _get(f"{tes.base_url}/ValueSet")[0] == 200
        assert _get(f"{tes.base_url}/Nothing")[0] == 404


def test_faults_by_request_number() -> None:
    faults = {
        1: Fault.status(429, retry_after=7),
        2: Fault.status(503),
        3: Fault.drop(),
        4: Fault.truncate(),
        5: Fault.invalid_json(),
        6: Fault.loop(),
        7: Fault.empty(),
        8: Fault.expired(),
        10: Fault.slow(0.3),
    }
    with FakeTES(_valuesets(30), page_cap=5, api_key=KEY, faults=faults) as tes:
        search = f"{tes.base_url}/ValueSet?status=active&_count=5"
        status, headers, _ = _get(search)
        assert status == 429 and headers["Retry-After"] == "7"
        assert _get(search)[0] == 503
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _get(search)
        with pytest.raises(http.client.IncompleteRead):
            _get(search)
        status, _, body = _get(search)
        with pytest.raises(ValueError):
            json.loads(body)
        bundle = json.loads(_get(search)[2])
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        assert nxt == [search]  # loop: next is this page
        bundle = json.loads(_get(search)[2])
        assert bundle["entry"] == [] and any(link["relation"] == "next" for link in bundle["link"])
        good_next = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
        assert _get(search)[0] == 410  # expired: tokens forgotten
        assert _get(good_next)[0] == 410
        started = time.monotonic()
        assert _get(search)[0] == 200
        assert time.monotonic() - started >= 0.3
        assert [r.status for r in tes.requests][:3] == [429, 503, None]


def test_always_failing_and_relative_links() -> None:
    with FakeTES(_valuesets(30), page_cap=5, api_key=KEY, relative_links=True) as tes:
        bundle = json.loads(_get(f"{tes.base_url}/ValueSet?status=active")[2])
        nxt = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
        assert nxt.startswith("/api/fhir?")
        tes.set_faults(always=Fault.status(500))
        assert {_get(f"{tes.base_url}/ValueSet")[0] for _ in range(3)} == {500}


def test_read_valuesets_accepts_fetch_files_lists_and_bundles(tmp_path: Path) -> None:
    items = _valuesets(4)
    (tmp_path / "a.json").write_text(json.dumps({"metadata": {}, "valuesets": items[:2]}))
    (tmp_path / "b.json").write_text(json.dumps([items[2]]))
    (tmp_path / "c.json").write_text(
        json.dumps({"resourceType": "Bundle", "entry": [{"resource": items[3]}]})
    )
    (tmp_path / "manifest.json").write_text("{}")
    assert read_valuesets(tmp_path) == items


def test_command_line_serves_a_folder(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps(_valuesets(12)))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "refinery.testing.fake_tes",
            "--data",
            str(tmp_path),
            "--port",
            str(port),
            "--api-key",
            KEY,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"127.0.0.1:{port}" in banner and "12 ValueSets" in banner
        status, _, body = _get(f"http://127.0.0.1:{port}/api/fhir/ValueSet?status=active")
        assert status == 200 and len(json.loads(body)["entry"]) == 10
    finally:
        process.terminate()
        process.wait(timeout=10)
