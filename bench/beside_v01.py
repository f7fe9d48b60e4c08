"""The database path beside the v0.1 release (issue 24, Performance): one-chunk documents with
the null backend, so only embedkeeper and PostgreSQL are measured.

One embedded server holds two databases with the same public.docs (texts of 100 to 400
characters, one chunk each): `now`, migrated by this tree, and `v01`, migrated by the v0.1
release run from a worktree (`git worktree add -f /tmp/v01 a7b24ba`; BENCH_V01_TREE). Each
round, in turn for each leg: its vectors are truncated and `backfill` runs as a process
(docs/s from its summary line, and over the process's wall time); then `run --once` with
nothing pending, as a process, alternated. Both legs run the same way on the same server and
alternate A B A B, because this machine is shared and its speed moves between minutes: only
the ratios of one run are comparable. A backfill's CPU time (the command's and the server's:
the postmaster's own and its children's, exited backends included) gives documents per
CPU-second, which other work on the machine moves far less than documents per second.

BENCH_V01_BEFORE names a third tree of this project (e.g. `git archive` of the commit before a
change, with its models/ and migrations links), run as a leg of its own in the same rounds: a
change's effect measured beside both. BENCH_V01_DOCS (default 300,000), BENCH_V01_ROUNDS
(default 3), BENCH_V01_NOOPS (no-op runs a leg, default 5).
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench._database import NULL_CONFIG, BenchDatabase, bench_database
from embedkeeper.models.pairs import pair_base_name

DOCS = int(os.environ.get("BENCH_V01_DOCS", "300000"))
ROUNDS = int(os.environ.get("BENCH_V01_ROUNDS", "3"))
NOOPS = int(os.environ.get("BENCH_V01_NOOPS", "5"))
V01_TREE = Path(os.environ.get("BENCH_V01_TREE", "/tmp/v01"))
BEFORE_TREE = os.environ.get("BENCH_V01_BEFORE")
RESULTS = Path(__file__).resolve().parent / "results"
PAIR = pair_base_name("docs", "null")
# v0.1 knew one table per model and no `full_text`; the same source and model otherwise.
V01_CONFIG = """
[source]
table = "public.docs"
[[models]]
name = "null"
backend = "null"
dimensions = 384
"""
# v0.1's entry point: its package was `daemon`, run from its tree.
V01_MAIN = "import sys; from daemon.cli import main; sys.argv[0] = 'embedkeeper'; sys.exit(main())"
# This tree's command: the venv's entry point, which imports the tree first on PYTHONPATH.
EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
RATE = re.compile(r"\(([\d.]+) docs/s")


def _fill(conn: psycopg.Connection[Any]) -> None:
    """Texts of 3 to 12 md5 blocks (100 to 400 characters): one chunk each."""
    conn.execute(
        "INSERT INTO docs (id, body) SELECT g, 'document ' || g || ': '"
        " || repeat(md5(g::text) || ' ', 3 + g %% 10) FROM generate_series(1, %s) AS g",
        (DOCS,),
    )
    conn.execute("VACUUM ANALYZE docs")


class Leg:
    """One release: its tree (None: this one, as imported), how to start its command, and which
    of its tables hold vectors."""

    def __init__(self, name: str, url: str, config: Path, tree: Path | None = None) -> None:
        self.name = name
        self.url = url
        self.config = config
        self.tree = tree

    def command(self, *args: str) -> list[str]:
        if self.name == "v01":
            return [sys.executable, "-c", V01_MAIN, *args, "--config", str(self.config)]
        return [str(EMBEDKEEPER), *args, "--config", str(self.config)]

    def run(self, *args: str) -> tuple[float, str]:
        """The command's wall time and its stdout; fails loudly (CPU time: `cpu_s`)."""
        env = {**os.environ, "EMBEDKEEPER_DATABASE_URL": self.url}
        if self.name == "v01":
            env["PYTHONPATH"] = str(self.tree)
        elif self.tree is not None:
            env["PYTHONPATH"] = f"{self.tree / 'daemon'}:{self.tree}"
        cwd = self.tree if self.name == "v01" else None
        start = time.perf_counter()
        done = subprocess.run(self.command(*args), env=env, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{self.name} {' '.join(args)}: {done.stderr[-2000:]}")
        return elapsed, done.stdout

    def truncate(self) -> None:
        if self.name == "v01":
            tables = [sql.Identifier("embedkeeper", t) for t in ("embeddings", "failures")]
        else:
            suffixes = ("_chunks", "_documents", "_failures")
            tables = [sql.Identifier("embedkeeper", PAIR + s) for s in suffixes]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(tables)))
            conn.execute("VACUUM ANALYZE docs")
            conn.execute("CHECKPOINT")


def _legs(database: BenchDatabase) -> list[Leg]:
    """`now` is a copy of the migrated template; the others databases their releases migrate."""
    legs = [_own_leg(database, "v01", V01_CONFIG, V01_TREE)]
    if BEFORE_TREE:
        legs.append(_own_leg(database, "before", NULL_CONFIG, Path(BEFORE_TREE)))
    legs.append(Leg("now", database.copy("now"), database.config))
    return legs


def _own_leg(database: BenchDatabase, name: str, config_text: str, tree: Path) -> Leg:
    url = database.create_docs(name, _fill)
    config = database.home / f"{name}.toml"
    config.write_text(config_text)
    leg = Leg(name, url, config, tree)
    leg.run("migrate")
    return leg


def _backfill(leg: Leg, server: Any) -> dict[str, float]:
    leg.truncate()
    before = _cpu_s(server)
    wall_s, out = leg.run("backfill")
    cpu_s = _cpu_s(server) - before
    match = RATE.search(out)
    assert match, out
    return {
        "docs_per_s": float(match[1]),
        "wall_docs_per_s": DOCS / wall_s,
        "docs_per_cpu_s": DOCS / cpu_s,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
    }


def _cpu_s(server: Any) -> float:
    """CPU seconds spent so far by the server (the postmaster, its live children, and the
    exited ones it reaped) and by this process's waited-for children (the commands)."""
    postmaster = server.get_postmaster_info().process
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        try:
            child_times = child.cpu_times()
        except Exception:  # psutil.NoSuchProcess: it exited between the list and the read
            continue
        total += child_times.user + child_times.system
    mine = resource.getrusage(resource.RUSAGE_CHILDREN)
    return float(total + mine.ru_utime + mine.ru_stime)


def main() -> None:
    if not (V01_TREE / "daemon" / "cli.py").is_file():
        raise SystemExit(f"no v0.1 tree at {V01_TREE}: git worktree add -f {V01_TREE} a7b24ba")
    figures: dict[str, Any] = {"docs": DOCS, "rounds": ROUNDS}
    with bench_database(NULL_CONFIG, _fill) as database:
        legs = _legs(database)
        for leg in legs:  # a first backfill makes the tables and warms the caches: not counted
            leg.run("backfill")
        backfills: dict[str, list[dict[str, float]]] = {leg.name: [] for leg in legs}
        for _ in range(ROUNDS):
            for leg in legs:
                backfills[leg.name].append(_backfill(leg, database.server))
        noops: dict[str, list[float]] = {leg.name: [] for leg in legs}
        for _ in range(NOOPS):
            for leg in legs:
                noops[leg.name].append(leg.run("run", "--once")[0])
    figures["backfill"] = backfills
    figures["noop_s"] = noops
    _report(backfills, noops)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "beside_v01.json").write_text(json.dumps(figures, indent=2))


def _report(backfills: dict[str, list[dict[str, float]]], noops: dict[str, list[float]]) -> None:
    print(f"beside v0.1: {DOCS} one-chunk documents, null backend, {ROUNDS} rounds alternated")
    for key in ("docs_per_s", "wall_docs_per_s", "docs_per_cpu_s"):
        old = [r[key] for r in backfills["v01"]]
        for name, rows in backfills.items():
            if name == "v01":
                continue
            new = [r[key] for r in rows]
            ratios = [n / o for n, o in zip(new, old, strict=True)]
            print(
                f"  backfill {key}: v0.1 {[round(x) for x in old]}, {name}"
                f" {[round(x) for x in new]}; {name} / v0.1 {[round(x, 2) for x in ratios]}"
                f" (median {statistics.median(ratios):.2f})"
            )
    base = statistics.median(noops["v01"])
    for name, times in noops.items():
        median = statistics.median(times)
        print(
            f"  no-op run --once, process s: {name} {[round(x, 2) for x in times]},"
            f" median {median:.2f} ({median / base:.2f} x v0.1's)"
        )
