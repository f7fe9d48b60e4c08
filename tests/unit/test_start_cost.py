"""What a command imports before it does anything: `run --once` with nothing to do is started by
cron or a systemd timer every few minutes, and v0.1 did it in 0.64 s. SQLAlchemy (0.37 s of
imports here) is needed only where tables are made (migrate, the pairs' tables); the pass, search
and the reports name a pair's tables without it (models/pairs.py imports it inside pair_tables)."""

from __future__ import annotations

import subprocess
import sys

LOADED = (
    "import sys\n"
    "import embedkeeper.cli, embedkeeper.commands.run, embedkeeper.service.lifecycle\n"
    "import embedkeeper.commands.search, embedkeeper.commands.stats\n"
    "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'torch', 'alembic'}))\n"
)


def test_the_pass_and_the_reports_import_neither_sqlalchemy_nor_torch_nor_alembic() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOADED], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_the_tables_still_load_where_they_are_made() -> None:
    from embedkeeper.models import metadata
    from embedkeeper.models.pairs import pair_tables

    _, chunks, _ = pair_tables("docs__minilm", "bigint", 384)
    assert chunks.name == "docs__minilm_chunks"
    assert "runs" in {t.name for t in metadata.sorted_tables}
