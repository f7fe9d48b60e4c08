"""Questions as people type them (issue 23, point 6): `python -m bench questions`.

The retrieval bench's questions are sentences copied out of the documents, which flatters both a
sentence model and full-text search. Here the questions are written as a reader types them
(short, in their own words, sometimes keywords or an identifier), each naming the document that
answers it and an exact substring of the answer, over this machine's Debian documentation. Two
sets, scored on one corpus and reported apart: bench/questions_debian.toml (45, session 9; seen
while search and the chunker were tuned since) and bench/questions_debian_heldout.toml (76 over
other packages, written in one sitting in session 12 before anything was run on them).
Scored at two levels, recall@K (K = 5):

- passage: among the K chunks a search returns (`nearest(..., chunks=True)`, what `search
  --chunks` shows), one of the named document holds the answer (its passage contains the
  substring, or its char_start..char_end covers it);
- document: the named document is among the K documents a search returns (`search`'s default:
  each document by its best chunk); "shown" also asks that the chunk shown for it hold the
  answer, the row a user reads.

The corpus goes into a real embedded PostgreSQL through the product's own path: `embedkeeper
migrate` and `embedkeeper backfill` with the default config (no [[models]]: MiniLM, its default
chunking) and `full_text = "english"` on the source, so one backfill serves both ways of
searching. Each question is embedded by the model's backend as `embedkeeper search` embeds it
and searched through the product's statements: vector only (store/search.nearest) and hybrid
(store/hybrid_search.hybrid_nearest); whatever those do when the bench runs is what it measures.

The corpus: every document a question names; its look-alikes, up to BENCH_QUESTIONS_SIBLINGS
(default 8) other files of 1,000 to 60,000 characters of the same package's directory (its
other changelogs, NEWS, release notes, copyright; 8 of the common licences);
BENCH_QUESTIONS_DISTRACTORS (default 300) Debian documents of 2,000 to 12,000 characters taken
evenly across the sorted list, as the retrieval bench takes its long ones (short, so that a run
stays near ten minutes on 2 shared cores: about 4,000 chunks, each embedded twice with the
title lever). Identical texts are kept once, and a document other than the named one that holds
an answer's exact words is left out (a second copy of the same passage cannot be told from the
first: the run says how many).

The title lever (BENCH_QUESTIONS_TITLE, default "path"; "" to skip; "path,first_line" for
both): the product has no option to embed a chunk with its document's title as context, so the
stored chunks are read back, each encoded again as "title: <context>\n<passage>" by the same
backend (the stored passage and span unchanged), loaded as a second pair's tables beside the
first (with the same full-text column), and searched through the same statements, vector only
and hybrid. <context> is the document's path under /usr/share/doc (or common-licenses) without
".gz", or its first non-blank line.

BENCH_QUESTIONS_MISSES=1 lists each question a way missed at passage level, with what it found.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from bench._corpus import ROOTS, _read, documents
from bench._database import bench_database
from bench.retrieval_search import Stored, make_pair

# Two sets, each document named by one set only: the first written in session 9 (and looked at
# while the chunker and search were tuned since), the second held out (written in one sitting
# in session 12 before anything was run on it). Both are scored on one corpus, each apart.
QUESTION_FILES = [
    Path(__file__).with_name("questions_debian.toml"),
    Path(__file__).with_name("questions_debian_heldout.toml"),
]
DISTRACTORS = int(os.environ.get("BENCH_QUESTIONS_DISTRACTORS", "300"))
SIBLINGS = int(os.environ.get("BENCH_QUESTIONS_SIBLINGS", "8"))
TITLES = [t for t in os.environ.get("BENCH_QUESTIONS_TITLE", "path").split(",") if t]
MISSES = os.environ.get("BENCH_QUESTIONS_MISSES", "") == "1"
K = 5
FULL_TEXT = "english"
MAX_SIBLING_CHARS = 60_000  # a sibling of more is left out: its chunks would cost minutes
# Distractors are short (a few chunks each): many documents to compete at the document level, at
# a cost in chunks the CPU model embeds in minutes (about 24 chunks/s on 2 cores, less shared).
DISTRACTOR_CHARS = (2_000, 12_000)
EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
# The default config (no [[models]]: the default model, MiniLM, and its default chunking), with
# the source's full-text column on so that one backfill serves vector-only and hybrid search.
CONFIG = """
[source]
table = "public.docs"
full_text = "english"
"""


@dataclass(frozen=True, slots=True)
class Question:
    ask: str
    path: str
    answer: str
    kind: str
    doc: str
    set: str = ""  # the file it came from, without "questions_" and ".toml"


@dataclass
class Corpus:
    paths: list[str]
    texts: list[str]
    dropped_holding_answer: int = 0

    def id_of(self, path: str) -> int:
        return self.paths.index(path) + 1  # public.docs ids start at 1


@dataclass
class Score:
    """Hits of one way of searching, by question number."""

    passage: set[int] = field(default_factory=set)
    document: set[int] = field(default_factory=set)
    shown: set[int] = field(default_factory=set)
    seconds: float = 0.0
    misses: list[str] = field(default_factory=list)


def main() -> None:
    from embedkeeper.logs import setup_logging

    setup_logging("WARNING", "text")
    questions = [q for path in QUESTION_FILES for q in load_questions(path)]
    corpus = build_corpus(questions)
    chars = sum(len(t) for t in corpus.texts)
    print(
        f"questions: {len(questions)} questions over {len({q.path for q in questions})}"
        f" documents; corpus {len(corpus.texts)} documents, {chars:,} characters"
        f" ({corpus.dropped_holding_answer} left out for holding an answer's words)",
        flush=True,
    )

    def fill(conn: psycopg.Connection[Any]) -> None:
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for number, text in enumerate(corpus.texts, start=1):
                copy.write_row((number, text))
        conn.execute("VACUUM ANALYZE docs")

    with bench_database(CONFIG, fill) as database:
        url = database.copy("questions")
        chunks, seconds = _migrate_and_backfill(url, database.config)
        print(
            f"  backfill (default config, full_text = {FULL_TEXT!r}): {chunks:,} chunks in"
            f" {seconds:.0f} s, {chunks / seconds:.0f} chunks/s",
            flush=True,
        )
        _measure(url, database.config, questions, corpus)


def load_questions(path: Path) -> list[Question]:
    """The question set, each answer checked to be in its document."""
    with path.open("rb") as f:
        rows = tomllib.load(f)["question"]
    label = path.stem.removeprefix("questions_")
    questions = [Question(**row, set=label) for row in rows]
    for q in questions:
        text = _read(Path(q.path))
        if text is None:
            raise SystemExit(f"{path.name}: {q.path} is missing or unreadable on this machine")
        if q.answer not in text:
            raise SystemExit(f"{path.name}: {q.answer!r} is not in {q.path}")
    return questions


def build_corpus(questions: Sequence[Question]) -> Corpus:
    """The named documents first, then their look-alikes, then the distractors; identical
    texts once; no document but the named one holding an answer's exact words."""
    answers = [q.answer for q in questions]
    targets = list(dict.fromkeys(q.path for q in questions))
    corpus = Corpus([], [])
    seen: set[bytes] = set()

    def add(path: str, text: str, named: bool) -> None:
        digest = hashlib.md5(text.encode()).digest()
        if digest in seen:
            return
        if not named and any(a in text for a in answers):
            corpus.dropped_holding_answer += 1
            return
        seen.add(digest)
        corpus.paths.append(path)
        corpus.texts.append(text.replace("\x00", ""))

    for path in targets:
        text = _read(Path(path))
        assert text is not None
        add(path, text, named=True)
    for path in _siblings(targets):
        text = _read(Path(path))
        if text is not None and 1_000 <= len(text) <= MAX_SIBLING_CHARS:
            add(path, text, named=False)
    taken = set(corpus.paths)
    low, high = DISTRACTOR_CHARS
    pool = [(p, t) for p, t in documents(low) if len(t) <= high and p not in taken]
    step = max(1.0, len(pool) / max(1, DISTRACTORS))
    for i in range(min(DISTRACTORS, len(pool))):
        path, text = pool[int(i * step)]
        add(path, text, named=False)
    return corpus


def _siblings(targets: Sequence[str]) -> list[str]:
    """Up to SIBLINGS other text files of each named document's package directory (or of the
    common licences), taken evenly in path order."""
    found: list[str] = []
    for directory in dict.fromkeys(_package_dir(Path(t)) for t in targets):
        files = sorted(
            str(p)
            for p in directory.rglob("*")
            if p.is_file() and not p.is_symlink() and str(p) not in targets
        )
        step = max(1.0, len(files) / max(1, SIBLINGS))
        found += [files[int(i * step)] for i in range(min(SIBLINGS, len(files)))]
    return found


def _package_dir(path: Path) -> Path:
    for root in ROOTS:
        if path.is_relative_to(root):
            relative = path.relative_to(root)
            return root / relative.parts[0] if len(relative.parts) > 1 else root
    return path.parent


def _migrate_and_backfill(url: str, config: Path) -> tuple[int, float]:
    """`embedkeeper migrate` then `embedkeeper backfill`, as a user runs them; the chunks
    written and the backfill's seconds (its model load included)."""
    env = {**os.environ, "EMBEDKEEPER_DATABASE_URL": url}
    args = ["--config", str(config)]
    subprocess.run([str(EMBEDKEEPER), "migrate", *args], env=env, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run([str(EMBEDKEEPER), "backfill", *args], env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm_chunks").fetchone()
        assert row is not None
    return int(row[0]), seconds


def _measure(url: str, config_path: Path, questions: Sequence[Question], corpus: Corpus) -> None:
    from dataclasses import replace

    from pgvector.psycopg import register_vector

    from embedkeeper.app import open_app
    from embedkeeper.commands.search import embed_question, pair_dimensions
    from embedkeeper.config import load_config

    config = load_config(config_path, overrides={"EMBEDKEEPER_DATABASE_URL": url})
    model = config.models[0]
    app = open_app(config)
    scores: dict[str, Score] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        made = app.pair(model)
        assert app.is_made(conn, made), "the backfill made the pair"
        pair = made.statements
        # As `embedkeeper search` embeds a question: the model's backend, its query prefix.
        backend = app.backend_factory(replace(model, prefix=model.query_prefix))
        dimensions = pair_dimensions(conn, made.names)
        vectors = [embed_question(backend, q.ask, dimensions, model.name) for q in questions]
        backend.close()
        spans = _answer_spans(questions, corpus)
        ways = {"vector": None, "hybrid": FULL_TEXT}
        for label, words in ways.items():
            scores[label] = _score(conn, pair, questions, vectors, spans, corpus, words)
        stored = _stored_chunks(conn, pair)
        doc_backend = app.backend_factory(model)
        for title in TITLES:
            start = time.perf_counter()
            titled = _with_titles(doc_backend, stored, corpus, title)
            encode_s = time.perf_counter() - start
            # The same passages, so the words' side is the same: only the vectors differ.
            titled_pair = make_pair(conn, titled, FULL_TEXT)
            for label, words in ways.items():
                scores[f"{label}, {title} as title"] = _score(
                    conn, titled_pair, questions, vectors, spans, corpus, words
                )
            print(
                f"  {title} as title: {len(stored.passages):,} chunks encoded again in"
                f" {encode_s:.0f} s",
                flush=True,
            )
        doc_backend.close()
    _report(questions, scores)


def _answer_spans(
    questions: Sequence[Question], corpus: Corpus
) -> list[tuple[int, list[tuple[int, int]]]]:
    """Each question's document id and the spans its answer occupies in that document."""
    spans = []
    for q in questions:
        text = corpus.texts[corpus.id_of(q.path) - 1]
        found, start = [], text.find(q.answer)
        while start >= 0:
            found.append((start, start + len(q.answer)))
            start = text.find(q.answer, start + 1)
        spans.append((corpus.id_of(q.path), found))
    return spans


def _score(
    conn: psycopg.Connection[Any],
    pair: Any,
    questions: Sequence[Question],
    vectors: Sequence[Any],
    spans: Sequence[tuple[int, list[tuple[int, int]]]],
    corpus: Corpus,
    words: str | None,
) -> Score:
    """Every question through the product's statements: K chunks, then K documents."""
    from embedkeeper.store.search.hybrid import hybrid_nearest
    from embedkeeper.store.search.nearest import nearest

    def search(q: Question, vector: Any, chunks: bool) -> list[Any]:
        if words is None:
            return nearest(conn, pair, vector, K, chunks=chunks)
        return hybrid_nearest(conn, pair, vector, q.ask, words, K, chunks=chunks)

    score = Score()
    for number, (q, vector, (doc_id, answer_spans)) in enumerate(
        zip(questions, vectors, spans, strict=True)
    ):
        start = time.perf_counter()
        by_chunk = search(q, vector, True)
        by_document = search(q, vector, False)
        score.seconds += time.perf_counter() - start
        held = _holding(conn, pair, by_chunk + by_document, q.answer, answer_spans)
        if any(h.document_id == doc_id and held[(h.document_id, h.chunk)] for h in by_chunk):
            score.passage.add(number)
        else:
            found = ", ".join(
                f"{corpus.paths[h.document_id - 1].removeprefix('/usr/share/')}#{h.chunk}"
                for h in by_chunk
            )
            score.misses.append(f"[{q.set}] {q.ask!r} ({q.kind}, {q.doc}) -> {found}")
        for hit in by_document:
            if hit.document_id == doc_id:
                score.document.add(number)
                if held[(hit.document_id, hit.chunk)]:
                    score.shown.add(number)
    return score


def _holding(
    conn: psycopg.Connection[Any],
    pair: Any,
    hits: Sequence[Any],
    answer: str,
    answer_spans: list[tuple[int, int]],
) -> dict[tuple[int, int], bool]:
    """Whether each hit's chunk holds the answer: its whole passage (not the 1,000 characters
    a hit carries) contains it, or its span covers one of the answer's places."""
    keys = list({(h.document_id, h.chunk) for h in hits})
    if not keys:
        return {}
    rows = conn.execute(
        sql.SQL(
            "SELECT document_id, chunk, char_start, char_end, passage FROM {}"
            " WHERE (document_id, chunk) IN (SELECT * FROM unnest(%s::bigint[], %s::int[]))"
        ).format(pair.names.chunks),
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    held = {key: False for key in keys}
    for document_id, chunk, start, end, passage in rows:
        covers = any(start <= a and b <= end for a, b in answer_spans)
        held[(document_id, chunk)] = answer in passage or covers
    return held


def _stored_chunks(conn: psycopg.Connection[Any], pair: Any) -> Stored:
    rows = conn.execute(
        sql.SQL(
            "SELECT document_id, char_start, char_end, passage FROM {} ORDER BY document_id, chunk"
        ).format(pair.names.chunks)
    ).fetchall()
    return Stored(
        "stored",
        [int(r[0]) for r in rows],
        [(int(r[1]), int(r[2])) for r in rows],
        [str(r[3]) for r in rows],
        None,
    )


def _with_titles(backend: Any, stored: Stored, corpus: Corpus, title: str) -> Stored:
    """The stored chunks, each encoded again with its document's title as context."""
    from embedkeeper.records import Document

    def context(document_id: int) -> str:
        if title == "path":
            # "apt/NEWS.Debian", "common-licenses/GPL-3": the package (or licence) and file
            path = corpus.paths[document_id - 1]
            return (
                path.removeprefix("/usr/share/doc/").removeprefix("/usr/share/").removesuffix(".gz")
            )
        if title == "first_line":
            text = corpus.texts[document_id - 1]
            return next((line.strip() for line in text.splitlines() if line.strip()), "")
        raise SystemExit(f"BENCH_QUESTIONS_TITLE: {title!r} is not path or first_line")

    texts = [
        f"title: {context(owner)}\n{passage}"
        for owner, passage in zip(stored.owners, stored.passages, strict=True)
    ]
    vectors = []
    for start in range(0, len(texts), 1024):
        part = [Document(i, t, False, b"") for i, t in enumerate(texts[start : start + 1024])]
        vectors += [e.vector for e in backend.embed(part)]
    return Stored(f"title_{title}", stored.owners, stored.spans, stored.passages, np.stack(vectors))


def _report(questions: Sequence[Question], scores: dict[str, Score]) -> None:
    sets = {"all": set(range(len(questions)))}
    for number, q in enumerate(questions):
        sets.setdefault(q.set, set()).add(number)
    print(
        f"\nquestions as people type them, recall@{K} (passage: a returned chunk holds the"
        f" answer; document: the document is returned; shown: and its row's chunk holds it):"
    )
    for name, numbers in sets.items():
        count = len(numbers)
        print(f"  {name}, {count} questions:")
        for label, score in scores.items():
            print(
                f"    {label:26} passage {len(score.passage & numbers) / count:.3f}"
                f"  document {len(score.document & numbers) / count:.3f}"
                f"  shown {len(score.shown & numbers) / count:.3f}"
            )
    count = len(questions)
    print(
        "  ms a search: "
        + ", ".join(f"{label} {1000 * s.seconds / (2 * count):.1f}" for label, s in scores.items())
    )
    groups: dict[str, list[int]] = {}
    for number, q in enumerate(questions):
        groups.setdefault(f"doc={q.doc}", []).append(number)
        groups.setdefault(f"kind={q.kind}", []).append(number)
    print(f"  passage recall@{K} by group: " + ", ".join(scores))
    for group, members in sorted(groups.items()):
        cells = "  ".join(
            f"{sum(n in s.passage for n in members)}/{len(members)}" for s in scores.values()
        )
        print(f"    {group:16} {cells}")
    if MISSES:
        for label, score in scores.items():
            print(f"  missed at passage level, {label}:")
            for line in score.misses:
                print(f"    {line}")
