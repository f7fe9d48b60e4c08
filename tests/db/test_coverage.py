"""Coverage figures against a table built to hold one document of every kind."""

from __future__ import annotations

from embedkeeper.commands.backfill import backfill
from embedkeeper.commands.coverage import format_table
from tests.conftest import insert_docs, source_config
from tests.fakes import ScriptedBackend


def test_coverage_counts_each_kind_of_document(conn, db_url, make_app):
    # 1-3 embedded; 4 NULL, 5 blank; 6 in review; 7 ignored; then 3 edited (stale), 8 new (pending)
    insert_docs(conn, ["one", "two", "three", None, "  ", "POISON six", "POISON seven"])
    app = make_app(source_config(db_url), ScriptedBackend(poison="POISON"))
    backfill(app, app.config.models)
    conn.execute(
        "UPDATE embedkeeper.docs__minilm_failures SET status = 'ignored' WHERE document_id = 7"
    )
    conn.execute("UPDATE docs SET body = 'three, edited' WHERE id = 3")
    insert_docs(conn, ["eight"], start=8)

    figures = app.coverage(conn, app.pair(app.config.models[0]))

    assert figures.as_json() == {
        "model": "minilm",
        "total": 8,
        "embedded": 3,
        "stale": 1,
        "pending": 2,
        "failed": 1,
        "ignored": 1,
        "skipped": 2,
        "source": "docs",
        "chunks": 3,  # one chunk each: short texts
        "truncated": 0,
        "coverage_percent": round((3 - 1) / (8 - 2) * 100, 2),
    }
    table = format_table([figures])
    assert table.splitlines()[1].split() == [
        "minilm",
        *["8", "3", "1", "2", "1", "1", "2"],
        *["3", "0"],  # chunks, truncated
        "33.33%",
    ]


def test_an_empty_source_is_fully_covered(db_url, make_app):
    app = make_app(source_config(db_url), ScriptedBackend())
    with app_conn(app) as conn:
        assert app.coverage(conn, app.pair(app.config.models[0])).coverage_percent == 100.0


def app_conn(app):
    from embedkeeper.store.db import connect

    return connect(app.url)
