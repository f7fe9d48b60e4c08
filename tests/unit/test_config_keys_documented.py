"""Every key the config accepts has a row in docs/configuration.md, under its section's heading,
and every section has a heading. Sections with the same keys share a table: its heading names
each (`## `[source]` or `[[sources]]``). A row counts only under a heading that names its
section, so a key documented under the wrong section, or outside every section, is missing."""

from __future__ import annotations

import re
from pathlib import Path

from embedkeeper.config.keys import SECTIONS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def reference_rows(text: str) -> dict[str, set[str]]:
    """The keys in the first column of each table, for each section the heading above it names
    (a heading that names none, such as "Where the config comes from", holds no keys)."""
    rows: dict[str, set[str]] = {}
    sections: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced:
            continue
        elif line.startswith("#"):
            sections = re.findall(r"`\[+(\w+)\]+`", line)
            for section in sections:
                rows.setdefault(section, set())
        elif cell := re.match(r"\|\s*`(\w+)`", line):
            for section in sections:
                rows[section].add(cell.group(1))
    return rows


def missing_keys(text: str) -> list[str]:
    rows = reference_rows(text)
    return sorted(
        f"[{section}] {key}"
        for section, keys in SECTIONS.items()
        for key in keys
        if key not in rows.get(section, set())
    )


def test_every_key_is_documented_under_its_section():
    missing = missing_keys(PAGE.read_text(encoding="utf-8"))

    assert not missing, f"keys docs/configuration.md lacks: {missing}"


def test_a_row_taken_out_or_moved_under_another_heading_is_missing():
    text = PAGE.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `claim_lease`"))
    moved = text.replace(row + "\n", "").replace("## `[logging]`\n", f"## `[logging]`\n\n{row}\n")

    assert missing_keys(text.replace(row + "\n", "")) == ["[database] claim_lease"]
    assert missing_keys(moved) == ["[database] claim_lease"]
    assert missing_keys(text.replace("## `[retry]`", "## Retries")) == sorted(
        f"[retry] {key}" for key in SECTIONS["retry"]
    )
