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


# Standard-library modules whose import has side effects (a browser, a window, a printed poem) or
# that this platform lacks: never imported for their pages.
PYDOC_SKIP = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "test",
    "lib2to3",
    "pydoc",
    "ensurepip",
    "venv",
    "curses",
    "readline",
}


def python_documents(min_chars: int = 4_000, max_chars: int = 40_000) -> list[str]:
    """Python's own documentation between the bounds, in name order: the `help()` page of each
    standard-library module (pydoc's plain-text rendering) and the language reference topics of
    pydoc_data. Long, distinctive texts that another team wrote, like the Debian files."""
    import importlib
    import pydoc
    import sys
    import warnings
    from pydoc_data.topics import topics

    pages = [topics[name] for name in sorted(topics)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(sys.stdlib_module_names):
            if name.startswith("_") or name in PYDOC_SKIP:
                continue
            try:
                module = importlib.import_module(name)
                renderer = pydoc.plaintext  # type: ignore[attr-defined]
                pages.append(pydoc.render_doc(module, renderer=renderer))
            except Exception:  # a module this platform lacks, or one that cannot be rendered
                continue
    return [page for page in pages if min_chars <= len(page) <= max_chars]
