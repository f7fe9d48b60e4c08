"""`embedkeeper deletes` through the installed command: the trigger it puts on the source, and
the log a DELETE then writes."""

from __future__ import annotations


def test_deletes_track_status_untrack(cli, conn):
    conn.execute("INSERT INTO docs (id, body) SELECT g, 'doc ' || g FROM generate_series(1, 5) g")

    tracked = cli("deletes", "track")
    assert tracked.returncode == 0, tracked.stderr
    assert tracked.stdout.startswith("deletes on public.docs are now logged")
    assert cli("deletes", "status").stdout == "public.docs: deletes logged\n"
    conn.execute("DELETE FROM docs WHERE id IN (2, 4)")
    logged = conn.execute(
        "SELECT source_table, document_id FROM embedkeeper.deleted_documents ORDER BY id"
    ).fetchall()
    assert logged == [("public.docs", "2"), ("public.docs", "4")]

    untracked = cli("deletes", "untrack")
    assert untracked.returncode == 0, untracked.stderr
    assert cli("deletes", "status").stdout == "public.docs: deletes not logged\n"
    conn.execute("DELETE FROM docs WHERE id = 1")
    assert conn.execute("SELECT count(*) FROM embedkeeper.deleted_documents").fetchone() == (0,)
