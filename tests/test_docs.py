"""The repository explains itself: every pointer into docs/ and every link in the
documentation leads to a file (and heading) inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "build", "node_modules", "__pycache__"}
SOURCE_SUFFIXES = {".py", ".h", ".cc", ".cu", ".md", ".sh", ".txt", ".toml"}
DOCS_POINTER = re.compile(r"docs/([\w.-]+\.md)(?:#([\w-]+))?")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _files():
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if path.is_file() and path.suffix in SOURCE_SUFFIXES:
            yield path


def _anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_pointers_into_docs_exist():
    pointers = []
    for path in _files():
        for match in DOCS_POINTER.finditer(path.read_text(errors="replace")):
            pointers.append((path.relative_to(ROOT), match.group(1), match.group(2)))
    assert pointers, "expected the code to point into docs/"
    for where, name, anchor in pointers:
        target = ROOT / "docs" / name
        assert target.is_file(), f"{where} points to docs/{name}, which does not exist"
        if anchor:
            assert anchor in _anchors(target), f"{where}: no heading #{anchor} in docs/{name}"


def test_documentation_links_stay_inside_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 5
    for page in pages:
        for link in MARKDOWN_LINK.findall(page.read_text()):
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            file_part, _, anchor = link.partition("#")
            target = (page.parent / file_part).resolve() if file_part else page
            assert target.is_relative_to(ROOT), f"{page.name}: {link} leaves the repository"
            assert target.exists(), f"{page.name}: {link} does not exist"
            if anchor:
                assert anchor in _anchors(target), f"{page.name}: no heading #{anchor} in {link}"


def test_no_pointer_to_the_specification_outside_the_repository():
    for path in _files():
        if path == Path(__file__):
            continue
        assert "ADAINT.md" not in path.read_text(errors="replace"), path.relative_to(ROOT)
