"""`embedkeeper search "question"`: the documents nearest to a question, as a table or JSON.

The question is embedded by the model's own backend with `query_prefix` in place of `prefix`
(models such as E5 or nomic-embed-text want "query: " on questions and "passage: " on
documents), so the command answers as an application using the same model would. One row per
document (its nearest chunk), or with --chunks one row per chunk, nearest first, from
store/search.py.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from embedkeeper.app import open_app
from embedkeeper.backends import Backend
from embedkeeper.config import Config
from embedkeeper.errors import ModelError, SchemaMissing, UsageError
from embedkeeper.records import Document
from embedkeeper.store.db import connect
from embedkeeper.store.full_text import full_text_config
from embedkeeper.store.hybrid_search import hybrid_nearest
from embedkeeper.store.pair_tables import PairNames
from embedkeeper.store.search import EF_SEARCH, VECTOR, Hit, nearest
from embedkeeper.store.vector_index import model_dimensions

SNIPPET_CHARS = 100


def cmd_search(args: argparse.Namespace, config: Config) -> int:
    question = args.query.strip()
    if not question:
        raise UsageError("search: the question is empty")
    model = config.model(args.model) if args.model else config.models[0]
    source, _ = config.chosen_pairs(args.source, model.name)[0]
    app = open_app(config)
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        queries = app.ready_pair(conn, model, source)
        dimensions = model_dimensions(conn, model)
        backend = app.backend_factory(replace(model, prefix=model.query_prefix))
        try:
            vector = embed_question(backend, question, dimensions, model.name)
        finally:
            backend.close()
        words_config = (
            None
            if args.vector_only
            else full_text_of(conn, app.names(model, source), source.full_text)
        )
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
    name = source.source_name
    if args.json:
        print(json.dumps([as_json(hit, name, model.name) for hit in hits], indent=2))
    else:
        print(format_hits(hits, name, model.name, by_words=words_config is not None))
    return 0


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


def as_json(hit: Hit, source: str, model: str) -> dict[str, Any]:
    document_id = (
        str(hit.document_id) if isinstance(hit.document_id, uuid.UUID) else hit.document_id
    )
    return {
        "source": source,
        "model": model,
        "document_id": document_id,
        "chunk": hit.chunk,
        "distance": round(hit.distance, 6),
        "text": hit.text,
        "found_by": list(hit.found_by),
    }


def format_hits(hits: list[Hit], source: str, model: str, *, by_words: bool = False) -> str:
    """The table; searched `by_words` too, a `found` column says which side found each row."""
    if not hits:
        return f"no embedded documents in {source} for model {model}"
    ids = [str(h.document_id) for h in hits]
    width = max(len("document"), *(len(i) for i in ids))
    found = f"  {'found':<6}" if by_words else ""
    lines = [f"{'distance':>8}  {'document':<{width}}  {'chunk':>5}{found}  passage"]
    for hit, doc_id in zip(hits, ids, strict=True):
        found = f"  {found_by(hit):<6}" if by_words else ""
        lines.append(
            f"{hit.distance:8.3f}  {doc_id:<{width}}  {hit.chunk:>5}{found}  {snippet(hit.text)}"
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
