"""`refinery report`: charts of the codes each TES release added and removed, per condition.

Reads the analytics mart `tes_release_changes` and writes into `--out`:
  release_changes.png   bars per release pair for the most-changed conditions
  release_changes.html  one self-contained page (the chart inlined, plus the numbers as a table)
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console

from loaders.errors import ConfigurationError, InvalidInputError
from refinery import connection

TOP_CONDITIONS = 12
PNG_NAME = "release_changes.png"
HTML_NAME = "release_changes.html"


@dataclass(frozen=True)
class ReleaseChange:
    """One condition between two consecutive releases (one row of tes_release_changes)."""

    canonical_url: str
    display_name: str
    previous_version: str
    version: str
    added_count: int
    removed_count: int
    is_new: bool

    @property
    def release_pair(self) -> str:
        return f"{self.previous_version} → {self.version}"


@dataclass(frozen=True)
class Report:
    png: Path
    html: Path
    conditions: int
    release_pairs: int


def read_changes(conn: psycopg.Connection, schema: str) -> list[ReleaseChange]:
    """Every row of `<schema>.tes_release_changes`, in release order."""
    query = sql.SQL(
        """
        select canonical_url, coalesce(display_name, canonical_url), previous_version, version,
               added_count, removed_count, is_new
        from {}.tes_release_changes
        order by release_pair_number, canonical_url
        """
    ).format(sql.Identifier(schema))
    try:
        rows = conn.execute(query).fetchall()
    except psycopg.errors.UndefinedTable as exc:
        raise ConfigurationError(
            f"{schema}.tes_release_changes does not exist; run `refinery build` first"
        ) from exc
    return [ReleaseChange(*row) for row in rows]


def most_changed(changes: Sequence[ReleaseChange], limit: int) -> list[str]:
    """Conditions with the most codes added plus removed over all release pairs (ties by url).

    A condition's first appearance (`is_new`) is not counted as churn: every code of it is
    "added", which would crowd out the conditions that really moved.
    """
    churn: dict[str, int] = defaultdict(int)
    for change in changes:
        if not change.is_new:
            churn[change.canonical_url] += change.added_count + change.removed_count
    ranked = sorted((-total, url) for url, total in churn.items() if total > 0)
    return [url for _, url in ranked[:limit]]


def _release_pairs(changes: Sequence[ReleaseChange]) -> list[str]:
    pairs: list[str] = []
    for change in changes:
        if change.release_pair not in pairs:
            pairs.append(change.release_pair)
    return pairs


def render_png(changes: Sequence[ReleaseChange], conditions: Sequence[str]) -> bytes:
    """Small multiples: per condition, codes added (up) and removed (down) per release pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = _release_pairs(changes)
    by_key = {(c.canonical_url, c.release_pair): c for c in changes}
    names = {c.canonical_url: c.display_name for c in changes}
    columns = min(3, max(1, len(conditions)))
    rows = max(1, -(-len(conditions) // columns))
    figure, axes = plt.subplots(
        rows, columns, figsize=(5.2 * columns, 3.2 * rows), squeeze=False, sharex=True
    )
    positions = range(len(pairs))
    for index, url in enumerate(conditions):
        axis = axes[index // columns][index % columns]
        added = [by_key[(url, p)].added_count if (url, p) in by_key else 0 for p in pairs]
        removed = [-by_key[(url, p)].removed_count if (url, p) in by_key else 0 for p in pairs]
        axis.bar(positions, added, color="#2a9d8f", label="added")
        axis.bar(positions, removed, color="#e76f51", label="removed")
        axis.axhline(0, color="#333333", linewidth=0.8)
        axis.set_title(_shorten(names.get(url, url), 42), fontsize=10)
        axis.set_xticks(list(positions), pairs, rotation=30, ha="right", fontsize=8)
        axis.tick_params(axis="y", labelsize=8)
    for index in range(len(conditions), rows * columns):
        axes[index // columns][index % columns].axis("off")
    if not conditions:
        axes[0][0].text(0.5, 0.5, "no code changed between releases", ha="center", va="center")
        axes[0][0].axis("off")
    else:
        axes[0][0].legend(fontsize=8, loc="upper left")
    figure.suptitle("Codes added (up) and removed (down) per TES release, most-changed conditions")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def render_html(png: bytes, changes: Sequence[ReleaseChange], conditions: Sequence[str]) -> str:
    """One page, no external resources: the chart as a data URI and the numbers as a table."""
    pairs = _release_pairs(changes)
    by_key = {(c.canonical_url, c.release_pair): c for c in changes}
    names = {c.canonical_url: c.display_name for c in changes}
    header = "".join(f"<th>{html.escape(p)}</th>" for p in pairs)
    body = []
    for url in conditions:
        cells = []
        for pair in pairs:
            change = by_key.get((url, pair))
            if change is None:
                cells.append("<td>–</td>")
            else:
                cells.append(
                    f'<td><span class="add">+{change.added_count}</span> '
                    f'<span class="del">−{change.removed_count}</span></td>'
                )
        body.append(
            f'<tr><th title="{html.escape(url)}">{html.escape(names.get(url, url))}</th>'
            + "".join(cells)
            + "</tr>"
        )
    image = base64.b64encode(png).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>TES release changes</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; font-size: .9rem; }}
.add {{ color: #1d7a6f; }} .del {{ color: #b5452a; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>Codes added and removed per TES release</h1>
<p>The {len(conditions)} conditions whose codes changed most across {len(pairs)} release pairs
(source: <code>tes_release_changes</code>).</p>
<img alt="codes added and removed per release" src="data:image/png;base64,{image}">
<table><thead><tr><th>condition</th>{header}</tr></thead>
<tbody>{"".join(body)}</tbody></table>
</body></html>
"""


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def write_report(conn: psycopg.Connection, schema: str, out: Path, limit: int = TOP_CONDITIONS) -> Report:
    changes = read_changes(conn, schema)
    conditions = most_changed(changes, limit)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot create report folder {out}: {exc.strerror}") from exc
    png = render_png(changes, conditions)
    png_path = out / PNG_NAME
    html_path = out / HTML_NAME
    png_path.write_bytes(png)
    html_path.write_text(render_html(png, changes, conditions), encoding="utf-8")
    return Report(png_path, html_path, len(conditions), len(_release_pairs(changes)))


def run(args: argparse.Namespace) -> int:
    settings = connection.resolve()
    schema = os.environ.get("REFINERY_SCHEMA", "refiner")
    with connection.connect(settings) as conn:
        report = write_report(conn, schema, Path(args.out))
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"{report.conditions} most-changed conditions over {report.release_pairs} release pairs")
    out.print(f"chart: {report.png.resolve()}")
    out.print(f"page:  {report.html.resolve()}")
    return 0
