"""A pair's relation names are made in one place (models/pairs.py), and what the code passes
for a pair is the one Pair (store/pair/pair.py), not a model's name beside a source's
statements. Both were broken at 2539447: names were built in four places (pair_tables.py,
vector_index.py, upgrade_index.py, models/pairs.py) and SourceSql's pair tables were Optional."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import embedkeeper

PACKAGE = Path(embedkeeper.__file__).parent
# A name made by appending one of a pair's endings to something: `f"{base}_chunks"`.
APPENDED_ENDING = re.compile(
    r"\}_(documents|chunks|failures|hnsw|full_text|chunking|documents_pkey|chunks_pkey)\b"
    r"|[\"']_(documents|chunks|failures|hnsw|full_text)[\"']"
)


def test_no_module_but_models_pairs_appends_a_pairs_ending_to_a_name() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "models" / "pairs.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if APPENDED_ENDING.search(line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert offenders == []


def test_a_pairs_statements_always_have_its_tables() -> None:
    """No Optional pair names with a TypeError guard: the source's own statements (SourceSql)
    and a pair's (PairSql, PairQueries) are different types, so mypy refuses the one where the
    other is meant."""
    from embedkeeper.store.pair.pair import Pair
    from embedkeeper.store.source.queries import PairQueries
    from embedkeeper.store.source.source_sql import PairSql, SourceSql

    assert "names" not in {f.name for f in dataclasses.fields(SourceSql)}
    names = {f.name: f for f in dataclasses.fields(PairSql)}["names"]
    assert "None" not in str(names.type)
    assert not hasattr(SourceSql, "prune")
    assert not hasattr(SourceSql, "coverage")
    assert issubclass(PairQueries, PairSql)
    pair_fields = {f.name for f in dataclasses.fields(Pair)}
    assert {"source", "model", "key_type", "dimensions", "chunking", "names"} <= pair_fields
    assert Pair.__dataclass_params__.frozen  # type: ignore[attr-defined]
