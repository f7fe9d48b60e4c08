"""Long real documents someone else wrote: this machine's Debian package documentation
(/usr/share/doc: READMEs, changelogs, copyright files, manuals; gzipped or not) and the common
licences. Read in path order, so a run sees the same documents on the same machine."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

ROOTS = (Path("/usr/share/doc"), Path("/usr/share/common-licenses"))
TEXT_SUFFIXES = {"", ".txt", ".md", ".rst", ".Debian", ".gz"}
MAX_BYTES = 2_000_000


def documents(min_chars: int = 0) -> Iterator[tuple[str, str]]:
    """(path, text) of each readable UTF-8 text file of at least `min_chars` characters."""
    for root in ROOTS:
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.suffix not in TEXT_SUFFIXES:
                continue
            text = _read(path)
            if text is not None and len(text) >= min_chars and text.strip():
                yield str(path), text


def _read(path: Path) -> str | None:
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                raw = f.read(MAX_BYTES + 1)
        else:
            raw = path.read_bytes()[: MAX_BYTES + 1]
    except (OSError, EOFError):
        return None
    if len(raw) > MAX_BYTES or b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def long_documents(count: int, min_chars: int = 4_000, max_chars: int = 40_000) -> list[str]:
    """`count` texts between the bounds, taken evenly across the sorted list (so every kind of
    file is in it, not only the first packages' changelogs)."""
    texts = [text for _, text in documents(min_chars) if len(text) <= max_chars]
    if len(texts) < count:
        raise SystemExit(f"only {len(texts)} documents of {min_chars}-{max_chars} characters here")
    step = len(texts) / count
    return [texts[int(i * step)] for i in range(count)]
