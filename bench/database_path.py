"""The database path at 1,000,000 documents, with the null backend so nothing but embedkeeper and
PostgreSQL is measured (issue 7, points 2 and 3):

- sync: `embedkeeper backfill` of every document on a fresh copy: docs/s overall and per 10% of
  progress (the cost per batch must stay flat), and the process's peak RSS;
- no-op: `embedkeeper run --once` on the synced table: the pass's own time (from
  embedkeeper.runs) and the EXPLAIN of its statements (no sequential scan of the source or the
  pair's records and chunks);
- change: 1% of documents edited (text and updated_at), 0.5% new, 0.2% deleted, then one
  `run --once`: its time, and from the database that coverage is back to 100% and the deleted
  documents' records and chunks are gone; three change sets (other documents each), the median
  pass against the time of embedding the changed documents at the sync's measured rate and at
  point 2's required 15,000 docs/s;
- sweep: without `updated_at_column`, 1% of texts edited, then the content-hash sweep
  (`backfill`): its docs/s over the whole table and that it re-embedded exactly the edited ones.

BENCH_DOCS (default 1,000,000), BENCH_RUNS (default 3; a bound is the median of the runs) and
BENCH_CHUNKS (default 1): about how many chunks each text makes (1: texts of 100 to 400
characters; k > 1: some 620 k characters each, the null model's window of 254 tokens at 3
characters a token less its overlap, so about k chunks). The sync reports chunks/s too, and the
chunker's share: the null model's chunker timed alone on a sample of the texts, scaled to all
of them, against the pass's time.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench._database import BenchDatabase, bench_database
from embedkeeper.models.pairs import pair_base_name

DOCS = int(os.environ.get("BENCH_DOCS", "1000000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CHUNKS = int(os.environ.get("BENCH_CHUNKS", "1"))
# md5 blocks of 33 characters per text: 3 to 12, or about 620 * CHUNKS characters' worth.
BLOCKS = 3 if CHUNKS <= 1 else 620 * CHUNKS // 33 - 5
REQUIRED_RATE = 15_000  # point 2's bound, docs/s
RESULTS = Path(__file__).resolve().parent / "results"
# The (docs, null) pair's tables: embedkeeper.<PAIR>_documents, _chunks and _failures.
PAIR = pair_base_name("docs", "null")
EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
MODEL = """
[[models]]
name = "null"
backend = "null"
dimensions = 384
"""
CONFIG = f"""
[source]
table = "public.docs"
updated_at_column = "updated_at"
full_text = ""  # off: as the recorded figures (its cost: bench full_text)
{MODEL}
[logging]
format = "json"
"""
CONFIG_NO_UPDATED_AT = f"""
[source]
table = "public.docs"
full_text = ""  # off: as the recorded figures (its cost: bench full_text)
{MODEL}
[logging]
format = "json"
"""


def _fill(conn: psycopg.Connection[Any]) -> None:
    """Texts of BLOCKS to BLOCKS + 9 md5 blocks, last changed over the past year (none in the
    last day)."""
    conn.execute("ALTER TABLE docs ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()")
    conn.execute(
        """
        INSERT INTO docs (id, body, updated_at)
        SELECT g, 'document ' || g || ': ' || repeat(md5(g::text) || ' ', %s + g %% 10),
               now() - interval '1 day' - (g %% 31536000) * interval '1 second'
        FROM generate_series(1, %s) AS g
        """,
        (BLOCKS, DOCS),
    )
    conn.execute("CREATE INDEX docs_updated_at_idx ON docs (updated_at, id)")
    conn.execute("VACUUM ANALYZE docs")


def main() -> None:
    with bench_database(CONFIG, _fill) as database:
        figures: dict[str, Any] = {"docs": DOCS, "runs": RUNS}
        syncs = []
        for run in range(RUNS):
            syncs.append(_sync(database, f"sync{run}"))
            if run:
                database.drop(f"sync{run - 1}")  # 2.4 GB each at 1M documents
        figures["sync"] = syncs
        _print_sync(syncs)
        url = database.url(f"sync{RUNS - 1}")
        with psycopg.connect(url, autocommit=True) as conn:
            # What autovacuum does within minutes of a large backfill: the visibility map lets
            # the prune's search read only the primary key of the records.
            for suffix in ("_documents", "_chunks"):
                table = sql.Identifier("embedkeeper", PAIR + suffix)
                conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
        figures["noop"] = _noop(database, url)
        figures["explain"] = _explain(url)
        rate = statistics.median(s["pass_docs_per_s"] for s in syncs)
        figures["change"] = _change(database, url, rate)
        _track_deletes(database, url)
        figures["change_with_delete_log"] = _change(database, url, rate, "with the delete log")
        figures["sweep"] = _sweep(database, url)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "database_path.json").write_text(json.dumps(figures, indent=2, default=str))


def _last_run(
    database: BenchDatabase, url: str, *args: str, config: Path | None = None
) -> tuple[float, tuple[Any, ...]]:
    """Run a command; its wall time, and its last run's (trigger, docs_ok, docs_deleted, ms)."""
    start = time.perf_counter()
    process = _embedkeeper(database, url, *args, config=config)
    _, err = process.communicate()
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {err.decode()[-2000:]}")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT trigger, docs_ok, docs_deleted,"
            " 1000 * extract(epoch FROM finished_at - started_at)"
            " FROM embedkeeper.runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert row is not None
    return elapsed, row


def _run_once(database: BenchDatabase, url: str) -> dict[str, Any]:
    """`embedkeeper run --once`; the pass's time is its row in embedkeeper.runs."""
    elapsed, row = _last_run(database, url, "run", "--once")
    assert row[0] == "schedule", row
    return {"ok": row[1], "deleted": row[2], "pass_ms": float(row[3]), "process_s": elapsed}


def _noop(database: BenchDatabase, url: str) -> dict[str, Any]:
    runs = [_run_once(database, url) for _ in range(max(RUNS, 3))]
    assert all(r["ok"] == 0 for r in runs), runs
    median = statistics.median(r["pass_ms"] for r in runs)
    print(f"  no-op pass: {median:.1f} ms (median of {[round(r['pass_ms'], 1) for r in runs]})")
    return {"runs": runs, "median_ms": median}


def _coverage(url: str) -> dict[str, int]:
    """What the pair's tables hold against the source: records, current records (hash of the
    document's text), records of documents that are gone, chunks, and chunks no record counts."""
    query = sql.SQL(
        """
        SELECT (SELECT count(*) FROM docs),
               (SELECT count(*) FROM {documents}),
               (SELECT count(*) FROM docs d JOIN {documents} e
                  ON e.document_id = d.id AND e.content_hash = decode(md5(d.body), 'hex')),
               (SELECT count(*) FROM {documents} e
                  WHERE NOT EXISTS (SELECT 1 FROM docs d WHERE d.id = e.document_id)),
               (SELECT count(*) FROM {chunks}),
               (SELECT coalesce(sum(chunk_count), 0) FROM {documents})
        """
    ).format(
        documents=sql.Identifier("embedkeeper", f"{PAIR}_documents"),
        chunks=sql.Identifier("embedkeeper", f"{PAIR}_chunks"),
    )
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
    keys = ("docs", "records", "current", "orphans", "chunks", "chunks_counted")
    return dict(zip(keys, (int(x) for x in row), strict=True))


def _track_deletes(database: BenchDatabase, url: str) -> None:
    """`embedkeeper deletes track`, then a delete and a pass: its full prune sets the baseline
    the log is checked against (as the first pass after a delete does once tracking begins)."""
    _last_run(database, url, "deletes", "track")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM docs WHERE id = 2")  # in none of the change set's residues
    _run_once(database, url)


def _change(database: BenchDatabase, url: str, sync_rate: float, label: str = "") -> dict[str, Any]:
    """The change set and one scheduled pass, each on a fresh copy of the synced database (at
    least 3 runs); the bound is the median pass."""
    runs = []
    for run in range(max(RUNS, 3)):
        copy = database.copy(f"change{run}", template=url)
        runs.append(_change_set(database, copy, run, sync_rate))
        database.drop(f"change{run}")
    median = statistics.median(r["pass_ms"] for r in runs)
    measured_budget = statistics.median(r["budget_ms"] for r in runs)
    required_budget = 1000 * (DOCS // 100 + DOCS // 200) / REQUIRED_RATE
    print(
        f"  catch-up{' ' + label if label else ''}: median {median:.0f} ms"
        f" of {[round(r['pass_ms']) for r in runs]};"
        f" budget {measured_budget:.0f} ms at the sync's measured rate"
        f" ({median / measured_budget:.2f} x),"
        f" {required_budget:.0f} ms at point 2's required {REQUIRED_RATE} docs/s"
        f" ({median / required_budget:.2f} x)"
    )
    return {
        "runs": runs,
        "median_ms": median,
        "budget_ms_at_measured_rate": measured_budget,
        "budget_ms_at_required_rate": required_budget,
    }


def _change_set(database: BenchDatabase, url: str, run: int, sync_rate: float) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        # Residues 7 (mod 100) and 3 (mod 500) never meet: no edited document is deleted.
        edited = conn.execute(
            "UPDATE docs SET body = body || ' (edited)', updated_at = now() WHERE id % 100 = 7"
        ).rowcount
        new = conn.execute(
            "INSERT INTO docs (id, body, updated_at) SELECT %s + g, 'new document ' || g, now()"
            " FROM generate_series(1, %s) AS g",
            (DOCS, DOCS // 200),
        ).rowcount
        deleted = conn.execute(
            "DELETE FROM docs WHERE id %% 500 = 3 AND id <= %s", (DOCS,)
        ).rowcount
        conn.execute("CHECKPOINT")  # the copy's own writes, out of the measured pass
    result = _run_once(database, url)
    coverage = _coverage(url)
    with psycopg.connect(url) as conn:
        # Deletes pruned from the delete log since the last full prune (None: not tracked).
        logged = conn.execute("SELECT deletes_logged FROM embedkeeper.sync_state").fetchone()
    result["pruned_from_log"] = logged[0] if logged else None
    budget_ms = 1000 * (edited + new) / sync_rate
    print(
        f"  change set {run + 1} ({edited} edited, {new} new, {deleted} deleted): one pass"
        f" {result['pass_ms']:.0f} ms (budget {budget_ms:.0f} ms = {edited + new} docs at"
        f" {sync_rate:.0f} docs/s), embedded {result['ok']}, deleted {result['deleted']}"
        f" ({result['pruned_from_log'] or 0} from the delete log);"
        f" after: {coverage}"
    )
    assert coverage["current"] == coverage["docs"] == coverage["records"], coverage
    assert coverage["orphans"] == 0, coverage
    assert coverage["chunks"] == coverage["chunks_counted"] >= coverage["docs"], coverage
    assert (result["ok"], result["deleted"]) == (edited + new, deleted), result
    return {
        **result,
        "budget_ms": budget_ms,
        "coverage": coverage,
        "expected": {"embedded": edited + new, "deleted": deleted},
    }


def _sweep(database: BenchDatabase, url: str) -> dict[str, Any]:
    """Without updated_at_column: 1% of texts edited, then the content-hash sweep (backfill)."""
    config = database.home / "no_updated_at.toml"
    config.write_text(CONFIG_NO_UPDATED_AT)
    with psycopg.connect(url, autocommit=True) as conn:
        edited = conn.execute(
            "UPDATE docs SET body = body || ' (swept)' WHERE id % 100 = 11"
        ).rowcount
        total = conn.execute("SELECT count(*) FROM docs").fetchone()
        assert total is not None
    elapsed, run = _last_run(database, url, "backfill", config=config)
    row = (run[1], float(run[3]) / 1000)
    rate = total[0] / row[1]
    print(
        f"  hash sweep: {total[0]} documents in {float(row[1]):.2f} s = {rate:.0f} docs/s"
        f" (process {elapsed:.1f} s); re-embedded {row[0]} of {edited} edited"
    )
    assert row[0] == edited, (row, edited)
    return {
        "docs": total[0],
        "pass_s": float(row[1]),
        "docs_per_s": rate,
        "reembedded": row[0],
        "edited": edited,
        "process_s": elapsed,
    }


def _explain(url: str) -> dict[str, Any]:
    """The plans of the pass's statements over the source and the pair's tables, each run in a
    transaction rolled back: a no-op scheduled pass's (the change walk), then the claims of a
    walk of the key index with a cursor half way, the full prune and the coverage figures (the
    O(table) ones). BENCH_PLANS=1 prints each plan."""
    from embedkeeper.app import open_app
    from embedkeeper.store.locks import claim_space
    from embedkeeper.store.state.sync_state import load

    config = load_config_for_bench(url)
    model = config.models[0]
    app = open_app(config)
    try:
        pair = app.pair(model)
        queries = pair.statements  # the statements over embedkeeper.<PAIR>_*
        chunking = app.chunking(model)
        window_chars = app.backend(model).max_chars
    finally:
        app.close()
    plans: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        since = load(conn, pair).since(config.source)
        # Every parameter a claim takes, as store/pass_io/claims.py claim_batch gives them.
        params = {
            "model": model.name,
            "since": since,
            "after": None,
            "after_ts": None,
            "limit": model.claim_size,
            "claim_space": claim_space(config.source.source_name, model.name),
            "ignore_delay": False,
            "prefix_chars": chunking.max_chars(window_chars),
            "claim_chars": chunking.claim_chars(model.claim_size, window_chars),
            "chunking": chunking.fingerprint,
        }
        statements = {
            "newest updated_at": (queries.newest_update(), {}),
            "other chunking exists": (queries.other_chunking_exists(), {}),
            "prune changed": (queries.prune_changed(), {}),
            "claim changed": (queries.claim("updated_at", after=False, scope="changed"), {}),
            "claim retries": (queries.claim("updated_at", after=False, scope="retries"), {}),
            "claim none, after": (queries.claim("none", after=True), {"after": DOCS // 2}),
            "claim updated_at, after": (
                queries.claim("updated_at", after=True),
                {"after": DOCS // 2},
            ),
            "claim hash, after": (queries.claim("hash", after=True), {"after": DOCS // 2}),
            # The table fully embedded, a claim with a cursor walks to the end; here 1,000 done
            # documents after the cursor, then twice `limit` pending (their records deleted,
            # rolled back), so the claim ends at its LIMIT.
            "claim none, 1000 done then pending": (
                queries.claim("none", after=True),
                {"after": DOCS // 2 - 1000},
            ),
            "prune": (queries.prune(), {}),
            "coverage": (queries.coverage(), {}),
        }
        for name, (statement, extra) in statements.items():
            with conn.transaction(force_rollback=True):
                if "then pending" in name:
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE document_id BETWEEN %s AND %s").format(
                            sql.Identifier("embedkeeper", f"{PAIR}_documents")
                        ),
                        (DOCS // 2 + 1, DOCS // 2 + 2 * model.claim_size),
                    )
                plan = [
                    r[0]
                    for r in conn.execute(
                        b"EXPLAIN (ANALYZE, COSTS OFF, BUFFERS) " + statement.as_bytes(conn),
                        {**params, **extra},
                    )
                ]
            seq = [line.strip() for line in plan if "Seq Scan" in line]
            plans[name] = {"plan": plan, "seq_scans": seq}
            print(f"  EXPLAIN {name}: {seq or 'no sequential scan'}")
            if os.environ.get("BENCH_PLANS"):
                print("\n".join("      " + line for line in plan))
    return plans


def load_config_for_bench(url: str) -> Any:
    from embedkeeper.config import load_config

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(CONFIG)
    return load_config(Path(f.name), overrides={"EMBEDKEEPER_DATABASE_URL": url})


def _embedkeeper(database: BenchDatabase, url: str, *args: str, config: Path | None = None) -> Any:
    env = {**os.environ, "EMBEDKEEPER_DATABASE_URL": url}
    command = [str(EMBEDKEEPER), *args, "--config", str(config or database.config)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _sync(database: BenchDatabase, name: str) -> dict[str, Any]:
    """One backfill of every document; progress events give docs/s per 10% of the way."""
    url = database.copy(name)
    start = time.perf_counter()
    process = _embedkeeper(database, url, "backfill")
    marks: list[tuple[float, int]] = [(start, 0)]
    assert process.stderr is not None
    for line in process.stderr:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "progress":
            marks.append((time.perf_counter(), int(record["done"])))
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"backfill failed ({status}): {process.stdout and process.stdout.read()}")
    if marks[-1][1] < DOCS:
        marks.append((time.perf_counter(), DOCS))
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT docs_ok, extract(epoch FROM finished_at - started_at) FROM embedkeeper.runs"
            " WHERE trigger = 'backfill' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert row is not None
    coverage = _coverage(url)
    assert coverage["current"] == coverage["records"] == coverage["docs"] == row[0], coverage
    assert coverage["chunks"] == coverage["chunks_counted"] >= coverage["docs"], coverage
    chunker_s = _chunker_seconds(url)
    per_step = [round((b[1] - a[1]) / max(b[0] - a[0], 1e-9)) for a, b in itertools.pairwise(marks)]
    # The first mark at or past each tenth of the documents (progress events come every tenth
    # and every 10 s, so a tenth ends at its own event).
    tenths = [marks[0]] + [next(m for m in marks if m[1] >= k * DOCS // 10) for k in range(1, 11)]
    per_tenth = [
        round((b[1] - a[1]) / max(b[0] - a[0], 1e-9)) for a, b in itertools.pairwise(tenths)
    ]
    return {
        "docs_ok": row[0],
        "pass_s": float(row[1]),
        "pass_docs_per_s": row[0] / float(row[1]),
        "process_s": elapsed,
        "process_docs_per_s": DOCS / elapsed,
        "docs_per_s_per_step": per_step,
        "docs_per_s_per_tenth": per_tenth,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "chunks": coverage["chunks"],
        "pass_chunks_per_s": coverage["chunks"] / float(row[1]),
        "chunker_s": chunker_s,
        "chunker_share": chunker_s / float(row[1]),
    }


def _chunker_seconds(url: str, sample: int = 5000) -> float:
    """The null model's chunker alone on every n-th text (up to `sample` of them), in CPU
    seconds, scaled to all the texts: the chunker's part of the pass."""
    from embedkeeper.chunking.for_model import model_chunking

    config = load_config_for_bench(url)
    chunker = model_chunking(config.models[0]).chunker
    step = max(DOCS // sample, 1)
    with psycopg.connect(url) as conn:
        texts = [
            r[0]
            for r in conn.execute(
                "SELECT body FROM docs WHERE id %% %s = 0 ORDER BY id", (step,)
            ).fetchall()
        ]
    start = time.process_time()
    for text in texts:
        chunker.split(text)
    return (time.process_time() - start) * DOCS / max(len(texts), 1)


def _print_sync(syncs: list[dict[str, Any]]) -> None:
    print(
        f"\ndatabase path, null backend, {DOCS} documents (BENCH_CHUNKS={CHUNKS}),"
        f" {len(syncs)} runs"
    )
    for s in syncs:
        print(
            f"  sync: pass {s['pass_docs_per_s']:8.0f} docs/s,"
            f" {s['pass_chunks_per_s']:8.0f} chunks/s ({s['chunks']} chunks),"
            f" chunker {100 * s['chunker_share']:.0f}% ({s['chunker_s']:.1f} s),"
            f" process {s['process_docs_per_s']:8.0f} docs/s,"
            f" peak RSS {s['peak_rss_mb']:.0f} MB; per tenth {s['docs_per_s_per_tenth']}"
        )
    print(
        f"  median pass {statistics.median(s['pass_docs_per_s'] for s in syncs):.0f} docs/s,"
        f" peak RSS {statistics.median(s['peak_rss_mb'] for s in syncs):.0f} MB"
    )
