"""A local fake TES FHIR server for tests, benchmarks and manual runs (stdlib only).

Serves any list of ValueSets as FHIR ``searchset`` Bundles the way HAPI FHIR (which TES runs)
does: ``GET <base>/ValueSet?status=active&_count=N`` answers the first page, the page size is
capped (``page_cap``) whatever ``_count`` asks, and each page links to the next one with an
opaque token (``<base>?_getpages=<search>&_page=<token>``). Requests need the ``X-API-KEY``
header (missing → 401, wrong → 403).

Faults are injected per request number (1-based, counting every request the server sees) or on
every request (``always``): ``Fault.status(429, retry_after=1)``, ``Fault.status(503)``,
``Fault.drop()`` (connection closed without an answer), ``Fault.slow(seconds)``,
``Fault.truncate()`` (body shorter than its Content-Length), ``Fault.invalid_json()``,
``Fault.loop()`` (the next link points back at this page), ``Fault.empty()`` (no entries but a
next link) and ``Fault.expired()`` (410 Gone: the paging snapshot expired; all paging tokens are
forgotten, as after a HAPI search cache expiry).

    with FakeTES(valuesets, page_cap=50, api_key="k", faults={2: Fault.status(429)}) as tes:
        ...  # tes.base_url, tes.requests

Manual use: ``python -m refinery.testing.fake_tes --data DIR --port 8080`` (or ``--synthetic``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_API_KEY = "fake-tes-key"


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or before) answering one request."""

    kind: str
    status_code: int = 503
    retry_after: str | None = None
    delay: float = 0.0

    @classmethod
    def status(cls, code: int, retry_after: float | str | None = None) -> Fault:
        return cls("status", status_code=code, retry_after=None if retry_after is None else str(retry_after))

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", delay=seconds)

    @classmethod
    def truncate(cls) -> Fault:
        return cls("truncate")

    @classmethod
    def invalid_json(cls) -> Fault:
        return cls("invalid_json")

    @classmethod
    def loop(cls) -> Fault:
        return cls("loop")

    @classmethod
    def empty(cls) -> Fault:
        return cls("empty")

    @classmethod
    def expired(cls) -> Fault:
        return cls("expired", status_code=410)


@dataclass(frozen=True)
class RecordedRequest:
    number: int
    path: str
    query: dict[str, list[str]]
    had_key: bool
    status: int | None


FaultPlan = Mapping[int, Fault] | Callable[[int, str], Fault | None]


@dataclass
class _Search:
    results: list[dict[str, Any]]
    count: int


@dataclass
class _State:
    valuesets: list[dict[str, Any]]
    api_key: str
    page_cap: int
    base_path: str
    faults: FaultPlan
    always: Fault | None
    relative_links: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0
    searches: dict[str, _Search] = field(default_factory=dict)
    pages: dict[str, tuple[str, int]] = field(default_factory=dict)  # token -> (search, offset)
    requests: list[RecordedRequest] = field(default_factory=list)

    def fault_for(self, number: int, path: str) -> Fault | None:
        if self.always is not None:
            return self.always
        if callable(self.faults):
            return self.faults(number, path)
        return self.faults.get(number)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests and benchmarks read their own output

    # --- plumbing -------------------------------------------------------------------------------

    def _send(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None, length: int | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json;charset=utf-8")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _outcome(self, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
            }
        ).encode()
        self._send(status, body, headers)

    def _record(self, number: int, status: int | None) -> None:
        parts = urlsplit(self.path)
        with self.server.state.lock:
            self.server.state.requests.append(
                RecordedRequest(
                    number, parts.path, parse_qs(parts.query), bool(self.headers.get("X-API-KEY")), status
                )
            )

    # --- requests -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            state.counter += 1
            number = state.counter
        key = self.headers.get("X-API-KEY")
        if not key:
            self._record(number, 401)
            self._outcome(401, "missing X-API-KEY")
            return
        if not secrets.compare_digest(key, state.api_key):
            self._record(number, 403)
            self._outcome(403, "invalid API key")
            return
        fault = state.fault_for(number, self.path)
        if fault is not None and self._apply(fault, number):
            return
        status, page = self._page(fault)
        self._record(number, status)
        if page is None:
            return
        body = json.dumps(page, ensure_ascii=False).encode("utf-8")
        if fault is not None and fault.kind == "truncate":
            self._send(200, body[: len(body) // 2], length=len(body))
            self.close_connection = True
            return
        if fault is not None and fault.kind == "invalid_json":
            body = body[: len(body) // 2] + b"<html>Bad Gateway</html>"
        self._send(200, body)

    def _apply(self, fault: Fault, number: int) -> bool:
        """Apply a fault; True when the request is fully handled by it."""
        if fault.kind == "status":
            self._record(number, fault.status_code)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._outcome(fault.status_code, f"injected {fault.status_code}", headers)
            return True
        if fault.kind == "expired":
            self._record(number, 410)
            with self.server.state.lock:
                self.server.state.searches.clear()
                self.server.state.pages.clear()
            self._outcome(410, "Search results expired: the paging snapshot is gone")
            return True
        if fault.kind == "drop":
            self._record(number, None)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.kind == "slow":
            time.sleep(fault.delay)
        return False

    def _page(self, fault: Fault | None) -> tuple[int, dict[str, Any] | None]:
        state = self.server.state
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        path = parts.path.rstrip("/")
        base = state.base_path.rstrip("/")
        if path == f"{base}/ValueSet":
            try:
                count = int(query.get("_count", "20"))
            except ValueError:
                self._outcome(400, "bad _count")
                return 400, None
            status = query.get("status")
            results = [r for r in state.valuesets if status is None or r.get("status") == status]
            search_id = secrets.token_hex(8)
            with state.lock:
                state.searches[search_id] = _Search(results, max(1, min(count, state.page_cap)))
            return 200, self._bundle(search_id, 0, fault)
        if path == base and "_page" in query:
            with state.lock:
                where = state.pages.get(query["_page"])
            if where is None or where[0] not in state.searches:
                self._outcome(410, "unknown or expired paging token")
                return 410, None
            return 200, self._bundle(where[0], where[1], fault)
        self._outcome(404, f"unknown path {parts.path}")
        return 404, None

    def _link(self, token: str, search_id: str) -> str:
        state = self.server.state
        relative = f"?_getpages={search_id}&_page={token}"
        if state.relative_links:
            return f"{state.base_path.rstrip('/')}{relative}"
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{state.base_path.rstrip('/')}{relative}"

    def _bundle(self, search_id: str, offset: int, fault: Fault | None) -> dict[str, Any]:
        state = self.server.state
        search = state.searches[search_id]
        entries = (
            []
            if fault is not None and fault.kind == "empty"
            else search.results[offset : offset + search.count]
        )
        token = secrets.token_urlsafe(12)
        with state.lock:
            state.pages[token] = (search_id, offset)
        links = [{"relation": "self", "url": self._link(token, search_id)}]
        next_offset = offset + search.count
        if fault is not None and fault.kind == "loop":
            host, port = self.server.server_address[:2]
            links.append({"relation": "next", "url": f"http://{host}:{port}{self.path}"})
        elif next_offset < len(search.results) or (fault is not None and fault.kind == "empty"):
            next_token = secrets.token_urlsafe(12)
            with state.lock:
                state.pages[next_token] = (search_id, next_offset if entries else offset)
            links.append({"relation": "next", "url": self._link(next_token, search_id)})
        host, port = self.server.server_address[:2]
        return {
            "resourceType": "Bundle",
            "id": secrets.token_hex(8),
            "meta": {"lastUpdated": "2025-09-10T20:19:03.939+00:00"},
            "type": "searchset",
            "link": links,
            "entry": [
                {
                    "fullUrl": f"http://{host}:{port}{state.base_path.rstrip('/')}/ValueSet/"
                    f"{resource.get('id', '')}",
                    "resource": resource,
                    "search": {"mode": "match"},
                }
                for resource in entries
            ],
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)


class FakeTES:
    """The fake server; a context manager that runs it on a background thread."""

    def __init__(
        self,
        valuesets: Iterable[Mapping[str, Any]],
        *,
        page_cap: int = 50,
        api_key: str = DEFAULT_API_KEY,
        faults: FaultPlan | None = None,
        always: Fault | None = None,
        relative_links: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        base_path: str = "/api/fhir",
    ) -> None:
        self._state = _State(
            [dict(r) for r in valuesets], api_key, page_cap, base_path, faults or {}, always, relative_links
        )
        self._server = _Server((host, port), self._state)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self._state.base_path.rstrip('/')}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def set_faults(self, faults: FaultPlan | None = None, always: Fault | None = None) -> None:
        """Replace the fault plan (request numbers keep counting from where they are)."""
        with self._state.lock:
            self._state.faults = faults or {}
            self._state.always = always

    def start(self) -> FakeTES:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-tes"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeTES:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def read_valuesets(folder: Path) -> list[dict[str, Any]]:
    """ValueSets from fetch-format files, JSON lists, Bundles or single ValueSets in a folder."""
    found: list[dict[str, Any]] = []
    paths: Sequence[Path] = [folder] if folder.is_file() else sorted(folder.glob("*.json"))
    for path in paths:
        if path.name == "manifest.json":
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(document, dict) and "valuesets" in document:
            found.extend(document["valuesets"])
        elif isinstance(document, list):
            found.extend(document)
        elif isinstance(document, dict) and document.get("resourceType") == "Bundle":
            found.extend(e["resource"] for e in document.get("entry", []) if "resource" in e)
        elif isinstance(document, dict) and document.get("resourceType") == "ValueSet":
            found.append(document)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m refinery.testing.fake_tes", description="Serve ValueSets as a fake TES FHIR API."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="folder (or file) of TES JSON to serve")
    source.add_argument("--synthetic", action="store_true", help="serve synthetic TES data")
    parser.add_argument("--seed", type=int, default=7, help="seed for --synthetic")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--page-cap", type=int, default=50)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args(argv)
    if args.synthetic:
        from refinery.synthetic import SyntheticSpec, generate_valuesets

        valuesets = generate_valuesets(SyntheticSpec(seed=args.seed))
    else:
        valuesets = read_valuesets(args.data)
    server = FakeTES(valuesets, page_cap=args.page_cap, api_key=args.api_key, port=args.port)
    print(
        f"fake TES serving {len(valuesets)} ValueSets at {server.base_url} "
        f"(header X-API-KEY: {args.api_key}); Ctrl-C stops",
        flush=True,
    )
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
