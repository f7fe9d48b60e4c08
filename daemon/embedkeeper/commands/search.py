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

from embedkeeper.app import open_app
from embedkeeper.backends import Backend
from embedkeeper.config import Config
from embedkeeper.errors import ModelError, UsageError
from embedkeeper.records import Document
from embedkeeper.store.db import connect
from embedkeeper.store.search import EF_SEARCH, Hit, nearest
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
        hits = nearest(
            conn, queries, vector, args.k, chunks=args.chunks, ef_search=args.ef_search or EF_SEARCH
        )
    name = source.source_name
    if args.json:
        print(json.dumps([as_json(hit, name, model.name) for hit in hits], indent=2))
    else:
        print(format_hits(hits, name, model.name))
    return 0


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
    }


def format_hits(hits: list[Hit], source: str, model: str) -> str:
    if not hits:
        return f"no embedded documents in {source} for model {model}"
    ids = [str(h.document_id) for h in hits]
    width = max(len("document"), *(len(i) for i in ids))
    lines = [f"{'distance':>8}  {'document':<{width}}  {'chunk':>5}  passage"]
    for hit, doc_id in zip(hits, ids, strict=True):
        lines.append(f"{hit.distance:8.3f}  {doc_id:<{width}}  {hit.chunk:>5}  {snippet(hit.text)}")
    return "\n".join(lines)


def snippet(text: str) -> str:
    """The passage on one line, cut to SNIPPET_CHARS."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"
