"""embedkeeper as one leg of bench/peers.py, in-process: what `embedkeeper backfill` does, timed
without the interpreter's start-up, imports, config, preflight or model load (the backends are
loaded before the clock starts, as the peers load theirs).

Two passes: `backfill` (coverage, prune, a content-hash sweep pass per model with work, coverage
again) and, with "command": "once", what `run --once` does: one tick of the daemon, the
change-driven scheduled pass per model (and the sweep, if one is due).

Run as `python -m bench._peers_embedkeeper SPEC_JSON`; the last line of stdout is the JSON result.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def main(spec: dict[str, Any]) -> dict[str, Any]:
    from embedkeeper.app import open_app
    from embedkeeper.commands.backfill import backfill
    from embedkeeper.config import load_config
    from embedkeeper.logs import setup_logging

    start = time.perf_counter()
    setup_logging("WARNING", "text")
    config = load_config(Path(spec["config"]), overrides={"EMBEDKEEPER_DATABASE_URL": spec["url"]})
    app = open_app(config)
    for model in config.models:
        app.backend(model)
    setup_s = time.perf_counter() - start
    try:
        if spec.get("command") == "once":
            return {"setup_s": setup_s, **_tick(app)}
        start = time.perf_counter()
        result = backfill(app, config.models)
        sync_s = time.perf_counter() - start
    finally:
        app.close()
    return {
        "setup_s": setup_s,
        "sync_s": sync_s,
        "embedded": sum(r.stats.ok for r in result.results.values()),
        "deleted": sum(r.deleted for r in result.results.values()),
        "coverage": [c.as_json() for c in result.coverage],
    }


def _tick(app: Any) -> dict[str, Any]:
    """`run --once`: one tick of the daemon, a scheduled (change-driven) pass per model."""
    import threading

    from embedkeeper.service.worker import Worker

    worker = Worker(app, threading.Event())
    start = time.perf_counter()
    worker.tick()
    return {"sync_s": time.perf_counter() - start, "passes_failed": worker.passes_failed}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
