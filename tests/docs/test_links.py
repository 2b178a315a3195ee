"""Every relative link in the project's markdown files points at a file, and at a heading
when it names one, so that splitting or renaming a page cannot leave a reader stranded."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SKIP_DIRS = frozenset({".venv", ".git", "node_modules", ".mypy_cache", ".pytest_cache"})
# [text](target) or [text](target "title"); images too. Not reference-style links: unused here.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    return sorted(
        p for p in ROOT.rglob("*.md") if not _SKIP_DIRS.intersection(p.relative_to(ROOT).parts[:-1])
    )


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked out: a `[x](y)`
    shown as code is an example, not a link, and a `#` inside a fence is not a heading."""
    out, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)), line))
    return out


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation dropped
    except '-' and '_', each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _raw_prose(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def _raw_prose(text: str) -> list[str]:
    out, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    links = []
    for number, line in enumerate(_prose_lines(path.read_text(encoding="utf-8")), start=1):
        for m in _LINK.finditer(line):
            target = m.group(1)
            if not _EXTERNAL.match(target):
                links.append((number, target))
    return links


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for _, target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(root)}: link {target!r}"
        if root.resolve() not in dest.parents:
            problems.append(f"{where}: points outside the repository")
        elif not dest.exists():
            problems.append(f"{where}: no such file {dest.relative_to(root.resolve())}")
        elif fragment and dest.suffix == ".md" and unquote(fragment) not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{fragment} in {dest.name}")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_readme_links_every_page_of_docs() -> None:
    """A page nobody links to is a page nobody finds."""
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for _, target in relative_links(ROOT / "README.md")
    }
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert unlinked == []


def test_the_checker_catches_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Exit codes\n\n## The `track` command (v1)\n")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md#exit-codes) [ok](b.md#the-track-command-v1) [ok](#here)\n"
        "# Here\n"
        "[gone](missing.md) [bad anchor](b.md#nowhere) [web](https://example.com/x.md)\n"
        "`[code](not-a-link.md)`\n```\n[fenced](not-a-link.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "a.md: link 'missing.md': no such file missing.md",
        "a.md: link 'b.md#nowhere': no heading with anchor #nowhere in b.md",
    ]
    assert anchors(tmp_path / "b.md") == {"exit-codes", "the-track-command-v1"}


def test_repeated_headings_get_numbered_anchors(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# Knobs\n\n## Knobs\n\n```sh\n# not a heading\n```\n")
    assert anchors(page) == {"knobs", "knobs-1"}
