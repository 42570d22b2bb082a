#!/usr/bin/env python3
"""Checks that the repository's citations of device-side facts stand alone.

Fails (exit 1, one line per problem) when:
  * a `protocols.md#<anchor>` reference anywhere in the tree names an anchor that
    docs/protocols.md does not define (`<a id="<anchor>"></a>`);
  * a link inside docs/protocols.md (`](#<anchor>)`) points at no anchor of the page;
  * a file cites a Markdown document by section number instead of by anchor
    ("protocols.md §2", "protocols.md rule 4", "notes.md section 1", "notes.md 4.3");
  * a file points outside the repository for reference material (a `/work/` path).

Usage: scripts/check_doc_refs.py [REPOSITORY_ROOT]   (default: this script's parent directory)
"""
import re
import sys
from pathlib import Path

SCANNED = ["src", "include", "tests", "docs", "bench", "scripts", "config", "docker", "migrations",
           "README.md", "CMakeLists.txt"]
TEXT_SUFFIXES = {".cpp", ".hpp", ".h", ".py", ".md", ".sh", ".lua", ".json", ".yaml", ".yml", ".txt",
                 ".sql", ".in", ""}

ANCHOR_DEF = re.compile(r'<a id="([A-Za-z0-9_-]+)"></a>')
CITATION = re.compile(r"protocols\.md#([A-Za-z0-9_-]+)")
PAGE_LINK = re.compile(r"\]\(#([A-Za-z0-9_-]+)\)")
OLD_STYLE = re.compile(r"\.md\s*(§|\b(rule|rules|section|sections)\b|\d+\.\d+)", re.IGNORECASE)
OUTSIDE = re.compile(r"/work/")


def files_under(root: Path):
    for name in SCANNED:
        path = root / name
        if path.is_file():
            yield path
        elif path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix in TEXT_SUFFIXES and "__pycache__" not in f.parts:
                    yield f


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    page = root / "docs" / "protocols.md"
    if not page.is_file():
        print(f"{page}: missing")
        return 1
    page_text = page.read_text(encoding="utf-8")
    anchors = set(ANCHOR_DEF.findall(page_text))
    problems = []
    for anchor in PAGE_LINK.findall(page_text):
        if anchor not in anchors:
            problems.append(f"docs/protocols.md: link to #{anchor}, which the page does not define")
    for f in files_under(root):
        if f.relative_to(root).as_posix() == "scripts/check_doc_refs.py":
            continue  # it names the patterns it looks for
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        rel = f.relative_to(root)
        for number, line in enumerate(text.splitlines(), start=1):
            for anchor in CITATION.findall(line):
                if anchor not in anchors:
                    problems.append(f"{rel}:{number}: cites protocols.md#{anchor}, which docs/protocols.md "
                                    "does not define")
            if OLD_STYLE.search(line):
                problems.append(f"{rel}:{number}: cites a document by section, not by anchor; use "
                                "docs/protocols.md#<anchor>")
            if OUTSIDE.search(line):
                problems.append(f"{rel}:{number}: points outside the repository for reference material")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
