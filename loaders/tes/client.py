"""The TES FHIR API client: one session, bounded retries, next-link paging with loop guards.

- One ``requests.Session`` with urllib3 ``Retry``: bounded retries with exponential backoff and
  jitter on 429/500/502/503/504, connection errors and read timeouts, honouring ``Retry-After``;
  ``(connect, read)`` timeouts on every request. Failures of the body itself (a truncated body,
  JSON that does not parse) are retried the same bounded way.
- Paging follows the Bundle ``link`` with relation ``next`` exactly as given (relative links are
  resolved against the page's URL) and accepts pages smaller than asked. Guards: a next link seen
  twice, a page with no entries but a next link, a page cap. A 410 (the server's paging snapshot
  expired) restarts the search once, discarding what the first attempt collected.
- The API key travels only in the ``X-API-KEY`` header, never to another origin (redirects are
  not followed, cross-origin next links are refused), and is never printed, logged or written.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from loaders.errors import ConfigurationError, UpstreamError

DEFAULT_BASE_URL = "https://tes.tools.aimsplatform.org/api/fhir"
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_RETRY_AFTER = 120.0


@dataclass(frozen=True)
class ClientSettings:
    """How to reach TES. ``api_key`` is excluded from repr so it never lands in a log."""

    base_url: str
    api_key: str = field(repr=False)
    page_size: int = 250
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    retries: int = 6
    backoff_factor: float = 1.0
    backoff_jitter: float = 1.0
    backoff_max: float = 60.0
    max_pages: int = 10_000


def api_key_configured(env: Mapping[str, str]) -> bool:
    """Whether a TES API key is given (``TES_API_KEY`` or ``TES_API_KEY_FILE``)."""
    return bool((env.get("TES_API_KEY") or "").strip() or (env.get("TES_API_KEY_FILE") or "").strip())


def api_key_from_env(env: Mapping[str, str]) -> str:
    """The TES API key: ``TES_API_KEY``, or the contents of the file ``TES_API_KEY_FILE`` names
    (a mounted container secret). Never echoed in errors."""
    key = (env.get("TES_API_KEY") or "").strip()
    path = (env.get("TES_API_KEY_FILE") or "").strip()
    if key and path:
        raise ConfigurationError("both TES_API_KEY and TES_API_KEY_FILE are set: set only one")
    if path:
        try:
            key = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigurationError(f"TES_API_KEY_FILE={path} cannot be read: {reason}") from None
        if not key:
            raise ConfigurationError(f"TES_API_KEY_FILE={path} is empty")
    if not key:
        raise ConfigurationError(
            "TES_API_KEY is not set: export the TES API key (or TES_API_KEY_FILE, a file holding it) "
            "to fetch from TES"
        )
    return key


def settings_from_env(
    base_url: str | None = None, page_size: int = 250, environ: dict[str, str] | None = None, **overrides: Any
) -> ClientSettings:
    """Settings from ``--base-url``/``TES_API_URL`` and the API key; clear errors otherwise."""
    env = os.environ if environ is None else environ
    api_key = api_key_from_env(env)
    url = (base_url or env.get("TES_API_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"TES base URL {url!r} is not an http(s) URL")
    if page_size < 1:
        raise ConfigurationError(f"--page-size must be at least 1, not {page_size}")
    tuning: dict[str, Any] = {}
    for name, key, kind in _TUNING:
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigurationError(f"{name}={raw!r} is not a number") from None
        if value < 0:
            raise ConfigurationError(f"{name} must not be negative")
        tuning[key] = value
    tuning.update(overrides)
    return ClientSettings(base_url=url, api_key=api_key, page_size=page_size, **tuning)


# Optional environment tuning (tests and slow networks): variable, setting, type.
_TUNING: list[tuple[str, str, Callable[[str], Any]]] = [
    ("TES_RETRIES", "retries", int),
    ("TES_BACKOFF_FACTOR", "backoff_factor", float),
    ("TES_BACKOFF_JITTER", "backoff_jitter", float),
    ("TES_CONNECT_TIMEOUT", "connect_timeout", float),
    ("TES_READ_TIMEOUT", "read_timeout", float),
    ("TES_MAX_PAGES", "max_pages", int),
]


# --- progress ------------------------------------------------------------------------------------


class Reporter(Protocol):
    def event(self, name: str, **fields: Any) -> None: ...

    def close(self) -> None: ...


class JsonLinesReporter:
    """One JSON object per line (for logs and schedulers)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def event(self, name: str, **fields: Any) -> None:
        record = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "logger": "refinery.fetch",
            "event": name,
            **fields,
        }
        stream = self._stream or sys.stderr
        stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        stream.flush()

    def close(self) -> None:
        return None


class RichReporter:
    """A live progress line (pages, ValueSets) on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._console = Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
        )
        self._task = self._progress.add_task("TES: connecting", total=None)
        self._progress.start()

    def event(self, name: str, **fields: Any) -> None:
        if name == "page":
            self._progress.update(
                self._task,
                description=(f"TES: page {fields.get('page')}, {fields.get('valuesets')} ValueSets"),
            )
        elif name == "validate":
            self._progress.update(
                self._task, description=(f"TES: validating {fields.get('valuesets')} ValueSets")
            )
        elif name in ("retry", "restart", "body_retry"):
            detail = ", ".join(f"{k}={v}" for k, v in fields.items())
            self._console.print(f"[yellow]{name}[/]: {detail}")

    def close(self) -> None:
        self._progress.stop()


def default_reporter() -> Reporter:
    return RichReporter() if sys.stderr.isatty() else JsonLinesReporter()


# --- the client ----------------------------------------------------------------------------------


class _Expired(Exception):
    """The server forgot the paging snapshot (410)."""


class _BodyError(Exception):
    """The response body was truncated or is not JSON."""


class _CappedRetry(Retry):
    """urllib3 Retry that never sleeps longer than MAX_RETRY_AFTER for a Retry-After header."""

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), MAX_RETRY_AFTER)


def build_session(settings: ClientSettings) -> requests.Session:
    retry = _CappedRetry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        other=0,
        redirect=0,
        backoff_factor=settings.backoff_factor,
        backoff_jitter=settings.backoff_jitter,
        backoff_max=settings.backoff_max,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=1)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update(
        {"Accept": "application/fhir+json", "X-API-KEY": settings.api_key, "User-Agent": "refinery-fetch"}
    )
    session.trust_env = True
    return session


@dataclass
class SearchStats:
    pages: int = 0
    retries: int = 0
    restarts: int = 0
    duplicates: int = 0
    other_entries: int = 0


class TESClient:
    """Searches ``ValueSet?status=active`` and yields every ValueSet exactly once."""

    def __init__(
        self,
        settings: ClientSettings,
        reporter: Reporter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.reporter: Reporter = reporter or JsonLinesReporter()
        self.stats = SearchStats()
        self._sleep = sleep
        self._session = build_session(settings)
        origin = urlsplit(settings.base_url)
        self._origin = (origin.scheme, origin.netloc)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> TESClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search_valuesets(self) -> list[dict[str, Any]]:
        """All active ValueSets; restarts once on 410; raises UpstreamError on failure."""
        try:
            return self._search()
        except _Expired:
            self.stats.restarts += 1
            self.reporter.event("restart", reason="paging expired (410); searching again")
            try:
                return self._search()
            except _Expired:
                raise UpstreamError(
                    "TES paging expired (410) twice: the search could not be completed"
                ) from None

    def _search(self) -> list[dict[str, Any]]:
        first = f"{self.settings.base_url}/ValueSet?status=active&_count={self.settings.page_size}"
        seen_links: set[str] = {first}
        found: dict[str, dict[str, Any]] = {}
        url: str | None = first
        page_number = 0
        while url is not None:
            page_number += 1
            if page_number > self.settings.max_pages:
                raise UpstreamError(
                    f"TES paging exceeded {self.settings.max_pages} pages; "
                    "stopping (raise the page cap if this is expected)"
                )
            bundle = self._get_page(url)
            entries = list(self._entries(bundle))
            for resource in entries:
                key = self._key(resource)
                if key in found:
                    self.stats.duplicates += 1
                found.setdefault(key, resource)
            next_url = self._next_link(bundle, url)
            self.stats.pages = page_number
            self.reporter.event("page", page=page_number, entries=len(entries), valuesets=len(found))
            if next_url is not None:
                if not entries:
                    raise UpstreamError(
                        f"TES page {page_number} has no entries but a next link: refusing to page on"
                    )
                if next_url in seen_links:
                    raise UpstreamError(f"TES next link on page {page_number} was seen before: paging loop")
                seen_links.add(next_url)
            url = next_url
        return list(found.values())

    @staticmethod
    def _key(resource: dict[str, Any]) -> str:
        if resource.get("id"):
            return f"id:{resource['id']}"
        return f"url:{resource.get('url')}|{resource.get('version')}"

    def _entries(self, bundle: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            mode = (entry.get("search") or {}).get("mode") if isinstance(entry, dict) else None
            if (
                isinstance(resource, dict)
                and resource.get("resourceType") == "ValueSet"
                and mode in (None, "match")
            ):
                yield resource
            else:
                self.stats.other_entries += 1

    def _next_link(self, bundle: dict[str, Any], page_url: str) -> str | None:
        for link in bundle.get("link") or []:
            if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
                resolved = urljoin(page_url, str(link["url"]))
                parts = urlsplit(resolved)
                if (parts.scheme, parts.netloc) != self._origin:
                    raise UpstreamError(
                        "TES next link points to another origin "
                        f"({parts.scheme}://{parts.netloc}): refusing to send "
                        "the API key there"
                    )
                return resolved
        return None

    def _get_page(self, url: str) -> dict[str, Any]:
        """One page, retrying body failures (truncated, not JSON) with the same bounded backoff."""
        attempt = 0
        while True:
            try:
                return self._get_once(url)
            except _BodyError as exc:
                attempt += 1
                if attempt > self.settings.retries:
                    raise UpstreamError(
                        f"TES answered an unusable page after {attempt} attempts: {exc}"
                    ) from None
                delay = min(
                    self.settings.backoff_max,
                    self.settings.backoff_factor * (2 ** (attempt - 1))
                    + random.uniform(0, self.settings.backoff_jitter),
                )
                self.stats.retries += 1
                self.reporter.event("body_retry", attempt=attempt, reason=str(exc), sleep_s=round(delay, 3))
                self._sleep(delay)

    def _get_once(self, url: str) -> dict[str, Any]:
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        try:
            response = self._session.get(url, timeout=timeout, allow_redirects=False)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            raise _BodyError(f"truncated body ({_reason(exc)})") from None
        except requests.exceptions.RetryError as exc:
            raise UpstreamError(
                f"TES kept failing after {self.settings.retries} retries: {_reason(exc)}"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise UpstreamError(
                f"TES unreachable after {self.settings.retries} retries: {_reason(exc)}"
            ) from None
        except requests.exceptions.Timeout as exc:
            raise UpstreamError(
                f"TES timed out after {self.settings.retries} retries: {_reason(exc)}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise UpstreamError(f"TES request failed: {_reason(exc)}") from None
        history = getattr(getattr(response.raw, "retries", None), "history", ()) or ()
        if history:
            self.stats.retries += len(history)
            self.reporter.event(
                "retry",
                count=len(history),
                causes=[str(item.status) if item.status else type(item.error).__name__ for item in history],
            )
        try:
            if response.status_code == 410:
                raise _Expired()
            if response.status_code in (401, 403):
                raise UpstreamError(
                    f"TES refused the API key (HTTP {response.status_code}): check TES_API_KEY"
                )
            if 300 <= response.status_code < 400:
                raise UpstreamError(
                    f"TES answered a redirect (HTTP {response.status_code}); "
                    "not following it with the API key"
                )
            if response.status_code != 200:
                retried = " after retries" if response.status_code in RETRY_STATUSES else ""
                raise UpstreamError(f"TES answered HTTP {response.status_code}{retried} for {_safe(url)}")
            try:
                body = response.content
            except (
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
                requests.exceptions.ConnectionError,
            ) as exc:
                raise _BodyError(f"truncated body ({_reason(exc)})") from None
            try:
                document = json.loads(body)
            except ValueError as exc:
                raise _BodyError(f"body is not JSON ({exc.msg} at byte {exc.pos})") from None
            if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
                raise UpstreamError(f"TES answered something that is not a Bundle for {_safe(url)}")
            return document
        finally:
            response.close()


def _reason(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, on one line."""
    inner: BaseException = exc
    while True:
        reason = getattr(inner, "reason", None)
        if isinstance(reason, BaseException) and reason is not inner:
            inner = reason
            continue
        args = getattr(inner, "args", ())
        if args and isinstance(args[0], BaseException) and args[0] is not inner:
            inner = args[0]
            continue
        break
    text = str(inner).replace("\n", " ").strip()
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def _safe(url: str) -> str:
    """A URL for messages: path only, the query (paging tokens) shortened."""
    parts = urlsplit(url)
    query = f"?{parts.query[:60]}{'...' if len(parts.query) > 60 else ''}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}"
