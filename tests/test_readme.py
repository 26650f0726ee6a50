"""The README is a short front door and every page behind it can be reached.

- README.md stays at most 200 lines and quotes no commit hash;
- its two commands are byte-for-byte the demo command and the test command CI runs;
- every relative link in README.md and docs/**/*.md points to a file that exists (and, for a
  `#anchor` into a Markdown page, to a heading of that page);
- every page under docs/ is linked from docs/README.md, the index.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"

MAX_README_LINES = 200
DEMO_COMMAND = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && refinery demo"
TEST_COMMAND = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && bash .ci/test'

# Pages other branches are writing at the same time; links to them may dangle until those
# branches are merged. The lead removes this list after merging them.
PENDING_PAGES = frozenset(
    {
        "docs/codes.md",
    }
)

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# 7 to 40 hex digits with at least one digit and one letter: an abbreviated or full commit hash
# (plain numbers such as dates or ports, and words such as "decade", do not count).
COMMIT_HASH = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code (neither holds links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text(encoding="utf-8")))


def relative_links(path: Path) -> list[str]:
    return [target for target in links(path) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(match) for match in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def repo_relative(path: Path) -> str:
    return path.resolve().relative_to(REPO).as_posix()


# --- the README --------------------------------------------------------------------------------


def test_readme_is_a_short_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"


def test_readme_quotes_no_commit_hash() -> None:
    found = COMMIT_HASH.findall(README.read_text(encoding="utf-8"))
    assert not found, f"README.md names commits {found}: benchmark figures belong in bench/results/"


def test_commit_hash_pattern() -> None:
    """The pattern finds hashes and leaves numbers and hex-looking words alone."""
    assert COMMIT_HASH.findall("at 8cfa23d, fa1430c and 906dd67 (32285e3f)") == [
        "8cfa23d",
        "fa1430c",
        "906dd67",
        "32285e3f",
    ]
    assert COMMIT_HASH.findall("versions 20241008 and 20250328, port 54329, a decade, 0.037x") == []


def _readme_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)
    assert blocks, "README.md has no bash block"
    first = blocks[0]
    return [line for line in first.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _ci_commands() -> list[str]:
    text = (REPO / ".ci/run").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip().startswith("python3 -m venv")]


def test_readme_commands_are_the_ones_ci_runs() -> None:
    commands = _readme_commands()
    assert commands == [DEMO_COMMAND, TEST_COMMAND], commands
    ci = _ci_commands()
    assert ci == [TEST_COMMAND], f".ci/run runs {ci}"
    assert commands[1] == ci[0]


# --- links ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", markdown_files(), ids=repo_relative)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page.resolve()
        try:
            name = repo_relative(destination)
        except ValueError:
            broken.append(f"{target} (outside the repository)")
            continue
        if not destination.exists():
            if name not in PENDING_PAGES:
                broken.append(f"{target} (no {name})")
            continue
        if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target} (no heading #{anchor} in {name})")
    assert not broken, f"{repo_relative(page)}: broken links {broken}"


def test_every_docs_page_is_in_the_index() -> None:
    index = DOCS / "README.md"
    linked = {
        repo_relative(index.parent / target.partition("#")[0])
        for target in relative_links(index)
        if target.partition("#")[0]
    }
    pages = {repo_relative(page) for page in DOCS.rglob("*.md") if page != index}
    missing = sorted(pages - linked)
    assert not missing, f"docs/README.md does not link {missing}"
    from_readme = {repo_relative(REPO / target.partition("#")[0]) for target in relative_links(README)}
    assert "docs/README.md" in from_readme, "README.md does not link the docs index"


def test_link_checker_sees_broken_links(tmp_path: Path) -> None:
    """The helpers above find links (not those in code) and the headings they point to."""
    page = tmp_path / "page.md"
    page.write_text(
        "# Which database\n\nSee [a](other.md#x), [b](https://example.org) and `[c](in-code.md)`.\n\n"
        "```\n[d](in-fence.md)\n```\n## Exit codes\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["other.md#x"]
    assert anchors(page) == {"which-database", "exit-codes"}
    assert slug("`refinery report`") == "refinery-report"
