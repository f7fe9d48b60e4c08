"""Every relative link in README.md and docs/*.md reaches something: the file exists and, for a
`#anchor`, a heading of that page makes that anchor. The reference moved from the README into
docs/ pages, and each move breaks the links that pointed at the old place unless a test says so.

Anchors are made as GitHub makes them (github-slugger): the heading's text in lower case, every
character but letters, digits, `_`, `-` and spaces dropped, each space a `-`, and `-1`, `-2`, ...
after a repeated heading. Headings and links inside fenced code blocks do not count."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`+[^`]*`+")


def prose_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks, inline code removed (a TOML table name such as
    `[source]` before a parenthesis is not a link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    made = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        if heading := re.match(r"#{1,6} +(.*?) *#* *$", line):
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            made.add(slug if count == 0 else f"{slug}-{count}")
    return made


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if re.match(r"[a-z]+:", target):  # https:, mailto:, file: are not checked here
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(root)}: {target} (no such file)")
            elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
                broken.append(f"{page.relative_to(root)}: {target} (no such heading)")
    return broken


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_reaches_a_file_and_heading():
    broken = [link for page in pages() for link in broken_links(page)]
    assert not broken, "\n".join(broken)


def test_the_docs_pages_are_linked_from_the_readme():
    """A page nobody links to is a page a newcomer never finds."""
    readme = "\n".join(prose_lines((ROOT / "README.md").read_text(encoding="utf-8")))
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(readme)}
    unlinked = [p.name for p in pages()[1:] if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link to: {unlinked}"


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## `[[models]]` (repeat)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#models-repeat) [ok](#page) [`x`](other.md)\n"
        "[gone](missing.md) [bad](other.md#models) [bad](#nowhere)\n"
        "```\n[in code](missing.md)\n# not a heading\n```\n"
    )

    assert broken_links(page, root=tmp_path) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#models (no such heading)",
        "page.md: #nowhere (no such heading)",
    ]
