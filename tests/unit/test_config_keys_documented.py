"""Every key the config accepts has a row in the README's configuration reference, under its
section's heading, and every section has a heading. Sections with the same keys share a table:
its heading names each (`### `[source]` or `[[sources]]``)."""

from __future__ import annotations

import re
from pathlib import Path

from embedkeeper.config.keys import SECTIONS

README = Path(__file__).resolve().parents[2] / "README.md"


def reference_rows() -> dict[str, set[str]]:
    """The keys in the first column of each `### [section]` table of the reference, for each
    section its heading names."""
    text = README.read_text(encoding="utf-8")
    reference = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, set[str]] = {}
    sections: list[str] = []
    for line in reference.splitlines():
        if line.startswith("### ") and (named := re.findall(r"`\[+(\w+)\]+`", line)):
            sections = named
            for section in sections:
                rows.setdefault(section, set())
        elif cell := re.match(r"\|\s*`(\w+)`", line):
            for section in sections:
                rows[section].add(cell.group(1))
    return rows


def test_every_key_is_documented_under_its_section():
    rows = reference_rows()
    missing = {
        f"[{section}] {key}"
        for section, keys in SECTIONS.items()
        for key in keys
        if key not in rows.get(section, set())
    }
    assert not missing, f"keys the README's reference lacks: {sorted(missing)}"
