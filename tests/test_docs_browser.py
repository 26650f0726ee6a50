"""`refinery docs` writes one static HTML page that renders in a real browser (headless Chromium).

Skips only when no Chromium binary is installed (Debian: `apt-get install chromium chromium-driver`).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from refinery import cli, dbt
from refinery.connection import DatabaseSettings

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT_DIR = REPO / "target" / "docs-screenshots"
MODEL_ID = "model.refinery.refinement_cache"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _browse(binary: str, url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with a fresh profile folder; Angular gets 15 s of virtual time."""
    command = [
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        *extra,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _visible_text(dom: str) -> str:
    """The rendered text of a page: scripts (where the docs embed the manifest) and tags removed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    body = re.sub(r"<[^>]+>", " ", body)
    return re.sub(r"\s+", " ", html.unescape(body)).strip()


def _normalise(text: str) -> str:
    """Drop markdown punctuation and collapse whitespace, so source and rendered text compare."""
    return re.sub(r"\s+", " ", re.sub(r"[`*_#\[\]()>|]", " ", text)).strip()


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = _chromium()
    if binary is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    return binary


@pytest.fixture
def docs_page(fresh_database: DatabaseSettings, use_database, capsys: pytest.CaptureFixture[str]) -> Path:
    """`refinery docs` against an empty database: the page renders from the manifest alone."""
    use_database(fresh_database)
    assert cli.main(["docs"]) == 0
    printed = capsys.readouterr().out
    page = dbt.target_path() / "static_index.html"
    assert str(page.resolve()) in printed, printed
    return page


def test_refinement_cache_page_renders(chromium: str, docs_page: Path, tmp_path: Path) -> None:
    manifest = json.loads((docs_page.parent / "manifest.json").read_text())
    node = manifest["nodes"][MODEL_ID]
    description = _normalise(node["description"])
    assert description, "refinement_cache has no description in the manifest"
    url = f"{docs_page.resolve().as_uri()}#!/model/{MODEL_ID}"

    dumped = _browse(chromium, url, tmp_path / "profile-dom", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    text = _visible_text(dumped.stdout)
    # The model page's heading and its description, rendered by the Angular app (not merely
    # present in the embedded manifest, which _visible_text strips).
    assert "refinement_cache" in text and "table" in text, text[:2000]
    assert description[:80] in _normalise(text), f"description not rendered: {text[:3000]}"
    for column in ("snomed_code", "jurisdiction_id", "aggregated_codes"):
        assert column in text, f"column {column} missing from the rendered page"

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOT_DIR / "refinement_cache.png"
    shot.unlink(missing_ok=True)
    captured = _browse(
        chromium, url, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,1000"
    )
    assert captured.returncode == 0, captured.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000, "screenshot missing or empty"
    _assert_not_blank(shot)


def _assert_not_blank(png: Path) -> None:
    """A rendered page has many distinct colours; a blank or error page has one or two."""
    import matplotlib.image as mpimg
    import numpy as np

    pixels = mpimg.imread(png)
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    assert len(colours) > 50, f"screenshot {png} looks blank ({len(colours)} colours)"
