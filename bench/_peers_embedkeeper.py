"""embedkeeper as one leg of bench/peers.py, in-process: what `embedkeeper backfill` does, timed
without the interpreter's start-up, imports, config, preflight or model load (the backends are
loaded before the clock starts, as the peers load theirs).

`backfill` is the only one-shot pass the CLI has (`run` is the scheduled daemon): it measures
coverage, prunes, runs a content-hash sweep pass per model with work, and measures coverage again.

Run as `python -m bench._peers_embedkeeper SPEC_JSON`; the last line of stdout is the JSON result.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def main(spec: dict[str, Any]) -> dict[str, Any]:
    from daemon.backfill import backfill
    from daemon.config import load_config
    from daemon.logs import setup_logging
    from daemon.startup import open_app

    start = time.perf_counter()
    setup_logging("WARNING", "text")
    config = load_config(Path(spec["config"]), overrides={"EMBEDKEEPER_DATABASE_URL": spec["url"]})
    app = open_app(config)
    for model in config.models:
        app.backend(model)
    setup_s = time.perf_counter() - start
    try:
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


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
