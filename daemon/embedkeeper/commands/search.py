"""`embedkeeper search "question"`: the documents nearest to a question, as a table or JSON.

The question is embedded by the model's own backend with `query_prefix` in place of `prefix`
(models such as E5 or nomic-embed-text want "query: " on questions and "passage: " on
documents), so the command answers as an application using the same model would. One row per
document (its nearest chunk), or with --chunks one row per chunk, best first, from
store/search/nearest.py. A search only reads: a pair with no tables yet is an error that says to
run a
backfill, and no model is loaded before the pair is known to hold vectors.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from embedkeeper.app import open_app
from embedkeeper.backends import Backend
from embedkeeper.config import Config, ModelConfig, SourceConfig
from embedkeeper.errors import ConfigError, ModelError, SchemaMissing, UsageError
from embedkeeper.records import Document
from embedkeeper.store.db import connect
from embedkeeper.store.pair.full_text import full_text_config
from embedkeeper.store.pair.tables import PairNames, vector_column_type
from embedkeeper.store.search.hybrid import hybrid_nearest
from embedkeeper.store.search.nearest import EF_SEARCH, VECTOR, Hit, nearest
from embedkeeper.store.serving.switches import serving_model

SNIPPET_CHARS = 100
BY_VECTOR = "vector"  # the JSON's `ranking`: by cosine similarity, `score` = 1 - distance
BY_RRF = "rrf"  # by vector and words, `score` = their reciprocal rank fusion


def cmd_search(args: argparse.Namespace, config: Config) -> int:
    question = args.query.strip()
    if not question:
        raise UsageError("search: the question is empty")
    app = open_app(config)
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        source, model = searched_pair(
            config, args.source, args.model, serving=partial(serving_model, conn)
        )
        pair = app.pair(model, source)
        names, queries = pair.names, pair.statements
        if not app.is_made(conn, pair):
            raise SchemaMissing(
                f"nothing embedded yet for {names.source}/{names.model}; run `embedkeeper"
                f" backfill --source {names.source} --model {names.model}` (or the daemon)"
            )
        dimensions = pair_dimensions(conn, names)
        words_config = None if args.vector_only else full_text_of(conn, names, source.full_text)
        backend = app.backend_factory(replace(model, prefix=model.query_prefix))
        try:
            vector = embed_question(backend, question, dimensions, model.name)
        finally:
            backend.close()
        ef_search = args.ef_search or EF_SEARCH
        if words_config is None:
            hits = nearest(conn, queries, vector, args.k, chunks=args.chunks, ef_search=ef_search)
        else:
            hits = hybrid_nearest(
                conn,
                queries,
                vector,
                question,
                words_config,
                args.k,
                chunks=args.chunks,
                ef_search=ef_search,
            )
    name, by_words = source.source_name, words_config is not None
    if args.json:
        ranking = BY_RRF if by_words else BY_VECTOR
        print(json.dumps([as_json(hit, name, model.name, ranking) for hit in hits], indent=2))
    else:
        print(format_hits(hits, name, model.name, by_words=by_words))
    # Which ways it searched, on stderr (stdout stays the table or the JSON): a vector-only
    # search of a source without full_text misses names and identifiers words would find.
    print(searched_by(names, words_config, vector_only=args.vector_only), file=sys.stderr)
    return 0


def searched_by(names: PairNames, words_config: str | None, *, vector_only: bool) -> str:
    pair = f"{names.source}/{names.model}"
    if words_config is not None:
        return f"searched {pair} by vector and words (full_text {words_config})"
    why = "--vector-only" if vector_only else 'full_text is off for this source: full_text = ""'
    return f"searched {pair} by vector only ({why})"


def searched_pair(
    config: Config,
    source: str | None,
    model: str | None,
    serving: Callable[[str], str | None] = lambda _: None,
) -> tuple[SourceConfig, ModelConfig]:
    """The pair a search reads: `--model` and `--source` (else the first source the model
    embeds); without `--model`, the source's serving model (`serving` reads it: the one
    `migrate` set or `switch` chose), else the first model that embeds the source (a database
    `migrate` has not given serving views). A model that does not embed the source is a
    ConfigError naming both."""
    if model is not None:
        return config.chosen_pairs(source, config.model(model).name)[0]
    chosen = config.source_named(source) if source else config.source
    served = serving(chosen.source_name)
    if served is None:
        return config.chosen_pairs(chosen.source_name, None)[0]
    if served not in {m.name for m in config.models}:
        raise ConfigError(
            f'source "{chosen.source_name}" is served by model "{served}", which is not in'
            " [[models]]: search it with --model, or `embedkeeper switch` the source to a"
            " configured model"
        )
    return config.chosen_pairs(chosen.source_name, served)[0]


def pair_dimensions(conn: psycopg.Connection[Any], names: PairNames) -> int:
    """The size of the pair's stored vectors, from its column's type (`vector(384)`)."""
    column = vector_column_type(conn, names)
    found = re.search(r"\((\d+)\)", column or "")
    if found is None:
        raise SchemaMissing(f"the chunks of {names.source}/{names.model} have no typed vectors")
    return int(found.group(1))


def full_text_of(conn: psycopg.Connection[Any], names: PairNames, wanted: str | None) -> str | None:
    """The text search configuration of the pair's full-text column; None: it has none. A
    source that asks for one `migrate` has not made yet is an error, not a quiet fallback to
    vectors alone."""
    config = full_text_config(conn, names)
    if wanted and config is None:
        raise SchemaMissing(
            f'source "{names.source}" has full_text = "{wanted}", but the chunks of model'
            f' "{names.model}" have no full-text column yet; run `embedkeeper migrate` (as the'
            " owner of schema embedkeeper) to add it, or search with --vector-only"
        )
    return config


def embed_question(
    backend: Backend, question: str, dimensions: int, model: str
) -> npt.NDArray[np.float32]:
    (embedded,) = backend.embed([Document(0, question, False, b"")])
    vector = np.asarray(embedded.vector, dtype=np.float32)
    if len(vector) != dimensions:
        raise ModelError(
            f'model "{model}" made a {len(vector)}-dimension vector of the question, but its '
            f"stored vectors have {dimensions}"
        )
    return vector


def as_json(hit: Hit, source: str, model: str, ranking: str = BY_VECTOR) -> dict[str, Any]:
    """One hit; `score` is what the results are ordered by (higher first), `ranking` says
    which: the cosine similarity, or the fused rank of vector and words."""
    document_id = (
        str(hit.document_id) if isinstance(hit.document_id, uuid.UUID) else hit.document_id
    )
    return {
        "source": source,
        "model": model,
        "document_id": document_id,
        "chunk": hit.chunk,
        "score": round(hit.score, 6),
        "ranking": ranking,
        "distance": round(hit.distance, 6),
        "text": hit.text,
        "found_by": list(hit.found_by),
    }


def format_hits(hits: list[Hit], source: str, model: str, *, by_words: bool = False) -> str:
    """The table, best first. Searched `by_words` too, the rows are in the order of their fused
    score, so it comes first, then the cosine distance, and a `found` column says which side
    found each row."""
    if not hits:
        return f"no embedded documents in {source} for model {model}"
    ids = [str(h.document_id) for h in hits]
    width = max(len("document"), *(len(i) for i in ids))
    score = f"{'score':>7}  " if by_words else ""
    found = f"  {'found':<6}" if by_words else ""
    lines = [f"{score}{'distance':>8}  {'document':<{width}}  {'chunk':>5}{found}  passage"]
    for hit, doc_id in zip(hits, ids, strict=True):
        score = f"{hit.score:7.4f}  " if by_words else ""
        found = f"  {found_by(hit):<6}" if by_words else ""
        lines.append(
            f"{score}{hit.distance:8.3f}  {doc_id:<{width}}  {hit.chunk:>5}{found}"
            f"  {snippet(hit.text)}"
        )
    return "\n".join(lines)


def found_by(hit: Hit) -> str:
    if len(hit.found_by) > 1:
        return "both"
    return "vector" if hit.found_by == (VECTOR,) else "words"


def snippet(text: str) -> str:
    """The passage on one line, cut to SNIPPET_CHARS."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"
