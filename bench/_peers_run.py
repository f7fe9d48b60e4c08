"""Launching one leg of bench/peers.py: each leg is a process of its own, so that its peak RSS is
its own (its VmHWM, polled), and a leg's result is the JSON on its last line of
stdout. The LangChain legs run under another interpreter (.venv-langchain, see
bench/requirements-langchain.txt)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
LANGCHAIN_PYTHON = Path(
    os.environ.get("BENCH_LANGCHAIN_PYTHON", str(ROOT / ".venv-langchain" / "bin" / "python"))
)


@dataclass(slots=True)
class Leg:
    wall_s: float
    rss_mb: float
    result: dict[str, Any] = field(default_factory=dict)


def _watch_peak_rss(pid: int, done: threading.Event, peak_kb: list[int]) -> None:
    """Poll the child's VmHWM. Not ru_maxrss: Linux carries the forking parent's high-water mark
    across exec into the child's ru_maxrss, so a child of a big parent would read as big."""
    status = Path(f"/proc/{pid}/status")
    while not done.wait(0.05):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb[0] = max(peak_kb[0], int(line.split()[1]))
        except (OSError, ValueError):
            return


def spawn(argv: list[str], env: dict[str, str] | None = None) -> Leg:
    """Run argv to its end; its wall time, peak RSS and the JSON of its last stdout line."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=err
        )
        done, peak_kb = threading.Event(), [0]
        watcher = threading.Thread(target=_watch_peak_rss, args=(child.pid, done, peak_kb))
        watcher.start()
        _, status, _ = os.wait4(child.pid, 0)
        wall_s = time.perf_counter() - start
        done.set()
        watcher.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = out.read().decode().strip().splitlines()
        if child.returncode != 0:
            tail = err.read().decode()[-3000:]
            raise SystemExit(f"{argv[:3]} failed ({child.returncode}):\n{tail}")
    result: dict[str, Any] = {}
    if lines and lines[-1].startswith("{"):
        result = json.loads(lines[-1])
    return Leg(wall_s, peak_kb[0] / 1024, result)


def seed_loop(spec: dict[str, Any]) -> Leg:
    return spawn([sys.executable, "-m", "bench._peers_seed", json.dumps(spec)])


def langchain(spec: dict[str, Any]) -> Leg:
    if not LANGCHAIN_PYTHON.exists():
        raise SystemExit(
            f"no {LANGCHAIN_PYTHON}: run `make bench`, which builds .venv-langchain, or set "
            "BENCH_LANGCHAIN_PYTHON"
        )
    script = str(ROOT / "bench" / "_peers_langchain.py")
    return spawn([str(LANGCHAIN_PYTHON), script, json.dumps(spec)])


def embedkeeper_pass(config: Path, url: str, command: str = "backfill") -> Leg:
    """`backfill` or `run --once` in-process, start-up and model load excluded
    (bench/_peers_embedkeeper.py)."""
    spec = {"config": str(config), "url": url, "command": command}
    return spawn([sys.executable, "-m", "bench._peers_embedkeeper", json.dumps(spec)])


def embedkeeper_cli(config: Path, url: str, *args: str) -> Leg:
    """An `embedkeeper` command (default `backfill`), whole: start-up and model load included."""
    command = [str(EMBEDKEEPER), *(args or ("backfill",)), "--config", str(config)]
    return spawn(command, {"EMBEDKEEPER_DATABASE_URL": url})


def copy_database(admin_url: str, name: str, template: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
