"""The test source's (source, model) pair tables, as SQL text for the tests' own queries."""

from __future__ import annotations


def pair_table(kind: str, model: str = "minilm", source: str = "docs") -> str:
    """A (source, model) pair's table as SQL text: kind is documents, chunks or failures."""
    from embedkeeper.models.pairs import pair_base_name

    return f"embedkeeper.{pair_base_name(source, model)}_{kind}"


RECORDS = pair_table("documents")  # the test source's records for the test model
CHUNKS = pair_table("chunks")
FAILURES = pair_table("failures")


def made_pair(app, conn, model=None, source=None):
    """The app's pair (its first model and source by default), its tables made if missing."""
    pair = app.pair(model or app.config.models[0], source)
    app.make_tables(conn, pair)
    return pair
