"""`python -m bench [NAME ...]`: run the named benchmarks (default: all) and print their tables."""

from __future__ import annotations

import sys

from bench import (
    beside_v01,
    chunked_backfill,
    chunker,
    database_path,
    edit_cost,
    full_text_cost,
    hnsw,
    instances,
    model_bound,
    peers,
    questions,
    recovery,
    retrieval,
    search,
    search_before,
    switch,
)

BENCHMARKS = {
    "model": model_bound.main,
    "instances": instances.main,
    "recovery": recovery.main,
    "database": database_path.main,
    "v01": beside_v01.main,
    "hnsw": hnsw.main,
    "peers": peers.main,
    "chunker": chunker.main,
    "chunker_short": chunker.short_main,
    "chunked": chunked_backfill.main,
    "retrieval": retrieval.main,
    "questions": questions.main,
    "search": search.main,
    "search_before": search_before.main,
    "full_text": full_text_cost.main,
    "edit_cost": edit_cost.main,
    "switch": switch.main,
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
