"""A source's serving view, embedkeeper.<source>: made by `migrate`, switched with no moment of
bad search, its name never another relation's; and `drop`, which refuses what it must."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from embedkeeper.app import open_app
from embedkeeper.commands.backfill import backfill
from embedkeeper.commands.migrate import make_pairs
from embedkeeper.errors import ConfigError, NotOwner
from embedkeeper.models.pairs import OWN_RELATIONS
from embedkeeper.store.pair.drop import ServingPairRefused, drop_pair
from embedkeeper.store.pair.tables import PairNames
from embedkeeper.store.serving.switches import recent_switches, serving_model, switch_to
from tests.conftest import insert_docs, source_config
from tests.db.test_pair_tables import catalog_names
from tests.db.test_privileges import worker_url  # noqa: F401 (a fixture)
from tests.fakes import ScriptedBackend

MINILM = {"name": "minilm", "dimensions": 384, "batch_size": 16, "claim_size": 32}
SMALL = {"name": "small", "dimensions": 8, "batch_size": 16, "claim_size": 32}


def two_models(url: str, **source: Any):
    return source_config(url, models=[MINILM, SMALL], **source)


def backfilled(config, models=None):
    """Both pairs made by `migrate`'s make_pairs (serving views too), then embedded by scripted
    backends of 384 and 8 dimensions, so a row tells which pair it came from."""
    make_pairs(config)
    backends = {"minilm": ScriptedBackend(dimensions=384), "small": ScriptedBackend(dimensions=8)}
    app = open_app(config, backend_factory=lambda model: backends[model.name])
    try:
        chosen = [m for m in config.models if models is None or m.name in models]
        assert backfill(app, chosen).exit_code == 0
    finally:
        app.close()


def served_dimensions(conn) -> list[int]:
    return [
        row[0]
        for row in conn.execute("SELECT vector_dims(embedding) FROM embedkeeper.docs").fetchall()
    ]


def test_embedkeepers_own_relations_are_the_names_a_serving_view_may_not_take(conn):
    assert catalog_names_of_relations(conn) == OWN_RELATIONS


def catalog_names_of_relations(conn) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'embedkeeper'"
    ).fetchall()
    return {row[0] for row in rows}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("docs__minilm", 'holds "__"'),
        ("docs__minilm_chunks", 'holds "__"'),
        ("runs", "embedkeeper has a table or index of that name"),
        ("switches", "embedkeeper has a table or index of that name"),
        ("d" * 64, "longer than PostgreSQL's 63 bytes"),
    ],
)
def test_a_source_named_like_a_relation_of_a_pair_or_of_embedkeeper_is_refused(name, why):
    with pytest.raises(ConfigError) as refused:
        source_config(name=name)

    message = str(refused.value)
    assert message.startswith(f'config: [source] is named "{name}", which cannot name its serving')
    assert why in message
    assert "give it another name, e.g. name = " in message


def test_no_serving_name_is_a_relation_of_any_pair_made_in_the_database(conn):
    """The pairs of test_pair_tables (plain, hashed, suffixed) made for real: none of their
    names is a name the config lets a source take."""
    from embedkeeper.models.pairs import serving_name_problem
    from tests.db.test_pair_tables import ODD_PAIRS, SUFFIXED_PAIRS, make_everything

    for source, model in [("docs", "minilm"), *ODD_PAIRS, *SUFFIXED_PAIRS]:
        make_everything(conn, PairNames.of(source, model))
    relations = catalog_names_of_relations(conn)
    assert all(serving_name_problem(name) is not None for name in relations), [
        name for name in relations if serving_name_problem(name) is None
    ]


def test_serve_must_name_a_model_that_embeds_the_source():
    with pytest.raises(ConfigError) as refused:
        source_config(models=[MINILM, SMALL], serve="smal")

    assert str(refused.value) == (
        'config: source "docs" serve = "smal" is not a model that embeds it; did you mean'
        ' "small"? (its models: minilm, small)'
    )


def test_migrate_serves_the_first_model_or_the_configured_one_and_keeps_it(conn, db_url):
    make_pairs(two_models(db_url, serve="small"))
    make_pairs(two_models(db_url))  # serve is read when the view is first made only

    assert serving_model(conn, "docs") == "small"
    switches = recent_switches(conn)
    assert [(s.source, s.from_model, s.to_model, s.missing) for s in switches] == [
        ("docs", None, "small", 0)
    ]
    assert switches[0].switched_by == conn.execute("SELECT current_user").fetchone()[0]
    columns = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'embedkeeper.docs'::regclass AND attnum > 0 ORDER BY attnum"
    ).fetchall()
    assert columns == [
        ("document_id", "bigint"),
        ("chunk", "integer"),
        ("passage", "text"),
        ("char_start", "integer"),
        ("char_end", "integer"),
        ("embedding", "vector"),
        ("full_text", "tsvector"),
    ]


def test_a_switch_under_concurrent_readers_never_fails_empties_or_mixes(conn, db_url):
    insert_docs(conn, [f"document number {i} about topic {i % 7}" for i in range(1, 201)])
    config = two_models(db_url)
    backfilled(config)
    assert set(served_dimensions(conn)) == {384}
    seen: list[tuple[int, ...]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        # Each search through the serving view: its ten nearest to document 1's first chunk,
        # the query vector read from the same view in the same statement.
        with psycopg.connect(db_url, autocommit=True) as reader:
            while not stop.is_set():
                try:
                    rows = reader.execute(
                        "SELECT vector_dims(v.embedding), v.embedding <=> q.embedding AS d"
                        " FROM embedkeeper.docs AS v CROSS JOIN (SELECT embedding FROM"
                        " embedkeeper.docs WHERE document_id = 1 AND chunk = 0) AS q"
                        " ORDER BY d LIMIT 10"
                    ).fetchall()
                except BaseException as exc:
                    errors.append(exc)
                    return
                seen.append(tuple(row[0] for row in rows))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        time.sleep(0.2)
        models = ["minilm", "small"]
        for turn in range(10):
            old, new = models[turn % 2], models[(turn + 1) % 2]
            switch_to(conn, PairNames.of("docs", new), expected=old)
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)

    assert errors == []
    assert len(seen) > 20
    assert all(len(dims) == 10 for dims in seen)  # never empty, never short
    assert all(len(set(dims)) == 1 for dims in seen)  # never a mix of the two pairs
    assert {dims[0] for dims in seen} == {384, 8}  # both were served
    assert serving_model(conn, "docs") == "minilm"
    assert len(recent_switches(conn, "docs", 100)) == 11  # migrate's, then ten


def test_the_serving_view_keeps_its_grants_and_uses_the_serving_pairs_hnsw_index(conn, db_url):
    insert_docs(conn, [f"passage {i}" for i in range(1, 61)])
    backfilled(two_models(db_url))
    conn.execute("CREATE ROLE ek_reader")
    try:
        conn.execute("GRANT SELECT ON embedkeeper.docs TO ek_reader")
        for names in (PairNames.of("docs", "minilm"), PairNames.of("docs", "small")):
            conn.execute(
                f"CREATE INDEX {names.hnsw_index} ON {names.chunks.as_string(conn)}"
                " USING hnsw (embedding vector_cosine_ops)"
            )
        switch_to(conn, PairNames.of("docs", "small"), expected="minilm")
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT document_id FROM embedkeeper.docs"
                " ORDER BY embedding <=> '[1,0,0,0,0,0,0,1]' LIMIT 5"
            )
        )
        granted = conn.execute(
            "SELECT has_table_privilege('ek_reader', 'embedkeeper.docs', 'SELECT')"
        ).fetchone()
    finally:
        conn.execute("REVOKE ALL ON embedkeeper.docs FROM ek_reader")
        conn.execute("DROP ROLE ek_reader")
    assert "Index Scan using docs__small_hnsw on docs__small_chunks" in plan
    assert granted == (True,)


def test_migrate_changing_full_text_makes_the_serving_view_again(conn, db_url):
    make_pairs(two_models(db_url))
    make_pairs(two_models(db_url, full_text="simple"))

    assert serving_model(conn, "docs") == "minilm"
    assert conn.execute("SELECT count(*) FROM embedkeeper.docs").fetchone() == (0,)


def test_drop_refuses_the_serving_pair_and_drops_another_with_its_rows(conn, db_url):
    insert_docs(conn, ["one", "two", "three"])
    backfilled(two_models(db_url))

    with pytest.raises(ServingPairRefused) as refused:
        drop_pair(conn, PairNames.of("docs", "minilm"), serving_model(conn, "docs"))
    assert str(refused.value) == (
        "docs/minilm serves source docs (the view embedkeeper.docs reads it): run"
        " `embedkeeper switch docs OTHER_MODEL` first"
    )
    dropped = drop_pair(conn, PairNames.of("docs", "small"), serving_model(conn, "docs"))

    assert dropped.relations == (
        "docs__small",
        "docs__small_documents",
        "docs__small_chunks",
        "docs__small_failures",
    )
    assert dropped.rows["sync_state"] == 1
    assert dropped.model_unregistered
    assert not any(name.startswith("docs__small") for name in catalog_names(conn))
    pairs = conn.execute("SELECT source, model FROM embedkeeper.pairs").fetchall()
    assert pairs == [("docs", "minilm")]
    assert served_dimensions(conn) == [384, 384, 384]  # search goes on
    with pytest.raises(ConfigError, match=r"no pair docs/small in this database \(pairs: docs/m"):
        drop_pair(conn, PairNames.of("docs", "small"), "minilm")


def test_a_least_privilege_role_may_not_drop_and_is_told_who_may(worker_url, conn, db_url):  # noqa: F811
    config = two_models(db_url, table="public.documents")
    make_pairs(config)
    with psycopg.connect(worker_url, autocommit=True) as worker:
        with pytest.raises(NotOwner) as refused:
            drop_pair(worker, PairNames.of("documents", "small"), "minilm")
        with pytest.raises(NotOwner, match="run this command as that role"):
            switch_to(worker, PairNames.of("documents", "small"), expected="minilm")

    assert str(refused.value) == (
        "dropping the pair documents/small needs the owner of its tables (the role that ran"
        " `embedkeeper migrate`): run `embedkeeper drop documents small` as that role"
    )
    assert conn.execute("SELECT count(*) FROM embedkeeper.pairs").fetchone() == (2,)
    assert serving_model(conn, "documents") == "minilm"


def test_a_switch_gives_up_rather_than_hold_searches_behind_a_long_query(conn, db_url):
    from embedkeeper.store.serving.switches import ViewBusy

    insert_docs(conn, ["one", "two"])
    backfilled(two_models(db_url))
    with psycopg.connect(db_url) as report:  # a long report: its transaction holds the view
        report.execute("SELECT count(*) FROM embedkeeper.docs").fetchone()
        started = time.monotonic()
        with pytest.raises(ViewBusy) as busy:
            switch_to(conn, PairNames.of("docs", "small"), expected="minilm", lock_timeout_s=0.3)
        waited_s = time.monotonic() - started
        report.rollback()

    assert str(busy.value).startswith(
        "a query has held embedkeeper.docs for over 0.3 s, so the switch gave up"
    )
    assert waited_s < 5
    assert serving_model(conn, "docs") == "minilm"  # nothing changed
    assert len(recent_switches(conn, "docs")) == 1
    switch_to(conn, PairNames.of("docs", "small"), expected="minilm")
    assert set(served_dimensions(conn)) == {8}


def test_a_vector_pair_and_a_halfvec_pair_cannot_take_turns_and_the_refusal_says_why(conn, db_url):
    from embedkeeper.store.serving.serving_view import ServingViewError

    half = {**SMALL, "name": "half", "storage": "halfvec"}
    make_pairs(source_config(db_url, models=[MINILM, half]))

    with pytest.raises(ServingViewError) as refused:
        switch_to(conn, PairNames.of("docs", "half"), expected="minilm")

    message = str(refused.value)
    assert message.startswith("the serving view embedkeeper.docs cannot show docs/half in place:")
    assert "embedding vector) differ from the pair's" in message
    assert "a vector pair and a halfvec pair cannot take turns behind one view" in message
    assert serving_model(conn, "docs") == "minilm"
