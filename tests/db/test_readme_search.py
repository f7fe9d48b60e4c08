"""The search snippets of the README and of docs/sql.md, run as a reader would paste them: the
SQL ones as they stand (psql takes them as is: no `$1`), the Python one as a script with only the
database URL in its environment. Each runs against a backfilled `public.documents`, the docs'
example table. Each is read from the page that shows it, so a snippet moved or lost fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from embedkeeper.commands.backfill import backfill
from embedkeeper.commands.migrate import make_pairs
from tests.cli.helpers import paragraphs
from tests.conftest import source_config

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SQL_PAGE = ROOT / "docs" / "sql.md"
OPEN_A_FILE = "To open a file, call open() with its path and a mode such as 'r' or 'w'."


def snippet(page: Path, name: str) -> str:
    match = re.search(
        rf"<!-- search snippet {name}: begin -->\n```\w+\n(.*?)```\n"
        rf"<!-- search snippet {name}: end -->",
        page.read_text(),
        re.S,
    )
    assert match, f"{page.relative_to(ROOT)} lost its {name} search snippet"
    return match.group(1)


@pytest.fixture
def documents(conn, db_url, make_app):
    """public.documents (id, body), 60 documents, all embedded with MiniLM; document 7 is the
    one about opening files."""
    conn.execute("CREATE TABLE public.documents (id bigint PRIMARY KEY, body text)")
    texts = paragraphs(60, sentences=2)
    texts[6] = OPEN_A_FILE
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.documents VALUES (%s, %s)",
            [(i, text) for i, text in enumerate(texts, start=1)],
        )
    config = source_config(db_url, table="public.documents")
    make_pairs(config)  # `migrate`: the pair's tables and view, the serving view
    app = make_app(config)
    assert backfill(app, app.config.models).exit_code == 0


def test_the_sql_search_snippet_runs_as_pasted(conn, documents):
    rows = conn.execute(snippet(README, "sql")).fetchall()

    assert len(rows) == 10
    assert rows[0][0] == 42  # a document is nearest to itself
    assert rows[0][2] == pytest.approx(0.0, abs=1e-6)
    distances = [row[2] for row in rows]
    assert distances == sorted(distances)


def test_the_hnsw_search_snippet_uses_the_index_and_finds_the_same(conn, documents):
    conn.execute(
        "CREATE INDEX documents__minilm_hnsw ON embedkeeper.documents__minilm_chunks"
        " USING hnsw (embedding vector_cosine_ops)"
    )
    plain = conn.execute(snippet(README, "sql")).fetchall()

    indexed = conn.execute(snippet(SQL_PAGE, "sql hnsw")).fetchall()
    conn.execute("SET enable_seqscan = off")  # 60 rows: a scan would win on cost alone
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + snippet(SQL_PAGE, "sql hnsw")))

    assert [row[0] for row in indexed] == [row[0] for row in plain]
    assert "Index Scan using documents__minilm_hnsw" in plan


def test_the_python_search_snippet_runs_with_only_the_url_set(db_url, documents):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(EMBEDKEEPER_DATABASE_URL=db_url, HF_HUB_OFFLINE="1")

    result = subprocess.run(
        [sys.executable, "-c", snippet(README, "python")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 10
    assert lines[0].split()[0] == "7"  # "how do I open a file?" finds the document about it


def test_the_full_text_snippet_runs_as_pasted_once_migrate_has_made_the_column(
    conn, db_url, documents, make_app
):
    make_pairs(source_config(db_url, table="public.documents", full_text="english"))

    rows = conn.execute(snippet(SQL_PAGE, "sql full text")).fetchall()

    assert [row[0] for row in rows] == [7]  # the one passage with both "open" and "file"
    assert rows[0][2] == OPEN_A_FILE[:60]
    assert rows[0][3] > 0
