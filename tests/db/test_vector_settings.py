"""A pair is bound to the settings its vectors were made with: a config that changes them under
the same model name is refused at start, naming old and new and the two ways out; `migrate
--reembed` adopts them in place and the next pass embeds every document again; a chunking-only
change is still adopted by a plain `migrate`; a pair recorded before alembic 0012 gets its
settings filled by the first `migrate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from embedkeeper.app import open_app
from embedkeeper.commands.migrate import make_pairs
from embedkeeper.config import parse_config
from embedkeeper.records import Document
from embedkeeper.store.pair.vector_settings import VectorSettingsChanged, settings_of
from tests.conftest import MINILM_ENTRY, insert_docs, one_pass, source_config, vectors
from tests.db.test_chunk_writer import md5

NULLM = {"name": "nullm", "backend": "null", "dimensions": 8}


def recorded(conn: psycopg.Connection[Any], model: str) -> Any:
    row = conn.execute(
        "SELECT vector_settings, chunking FROM embedkeeper.pairs"
        " WHERE source = 'docs' AND model = %s",
        (model,),
    ).fetchone()
    return row


def test_a_changed_prefix_or_normalize_under_the_same_name_is_refused_at_start(conn, db_url):
    old = source_config(db_url, models=[NULLM])
    make_pairs(old)
    assert recorded(conn, "nullm")[0] == settings_of(old.models[0])
    assert recorded(conn, "nullm")[0]["prefix"] == ""

    prefixed = source_config(db_url, models=[{**NULLM, "prefix": "query: "}])
    for start in (open_app, make_pairs):  # every command, `migrate` without --reembed too
        with pytest.raises(VectorSettingsChanged) as refused:
            start(prefixed)
        said = str(refused.value)
        assert """source "docs", model "nullm" (prefix '' -> 'query: ')""" in said
        assert "embedkeeper switch docs NEWNAME" in said
        assert "embedkeeper migrate --reembed docs nullm" in said
        assert refused.value.exit_code == 1

    unnormalized = source_config(db_url, models=[{**NULLM, "normalize": False}])
    with pytest.raises(VectorSettingsChanged, match="normalize True -> False"):
        open_app(unnormalized)
    both = source_config(db_url, models=[{**NULLM, "normalize": False, "prefix": "q: "}])
    with pytest.raises(VectorSettingsChanged, match="normalize True -> False; prefix '' -> 'q: '"):
        open_app(both)
    assert recorded(conn, "nullm")[0] == settings_of(old.models[0])  # nothing adopted

    open_app(old).close()  # the recorded settings start


def test_migrate_reembed_adopts_the_settings_and_the_next_pass_embeds_again(
    conn, db_url, make_app, minilm, capsys
):
    texts = ["The cat sat on the mat.", "Stock markets fell sharply on Tuesday."]
    ids = insert_docs(conn, texts)
    old = source_config(db_url)
    make_pairs(old)
    app = make_app(old)
    one_pass(app)
    before = vectors(conn)
    assert set(before) == set(ids)
    assert recorded(conn, "minilm")[0] == settings_of(old.models[0])
    old_chunking = recorded(conn, "minilm")[1]

    new = source_config(db_url, models=[{**MINILM_ENTRY, "prefix": "query: "}])
    with pytest.raises(VectorSettingsChanged, match="prefix '' -> 'query: '"):
        open_app(new)

    capsys.readouterr()
    make_pairs(new, reembed=frozenset({("docs", "minilm")}))
    said = capsys.readouterr().out
    assert "vector settings changed (prefix '' -> 'query: ')" in said
    assert "search mixes the two vector spaces" in said
    assert "embedkeeper switch" in said
    settings, chunking = recorded(conn, "minilm")
    assert settings == settings_of(new.models[0])
    assert chunking != old_chunking  # every record is stale now

    fresh = open_app(new)  # starts now, and loads the model with the new prefix
    try:
        assert fresh.coverage(conn, fresh.pair(new.models[0])).stale == len(ids)
        one_pass(fresh)
        assert fresh.coverage(conn, fresh.pair(new.models[0])).stale == 0
    finally:
        fresh.close()
    after = vectors(conn)
    for doc_id, text in zip(ids, texts, strict=True):
        direct = minilm.embed([Document(doc_id, "query: " + text, False, md5(text))])[0].vector
        cosine = float(np.dot(after[doc_id], direct))
        cosine /= float(np.linalg.norm(after[doc_id]) * np.linalg.norm(direct))
        assert cosine >= 0.9999
        assert float(np.dot(after[doc_id], before[doc_id])) < 0.9999  # re-embedded

    capsys.readouterr()
    make_pairs(new, reembed=frozenset({("docs", "minilm")}))  # again: nothing changes
    assert "vector settings unchanged: nothing to embed again" in capsys.readouterr().out


def test_a_chunking_only_change_is_still_adopted_by_migrate(conn, db_url, capsys):
    old = source_config(db_url, models=[{**NULLM, "chunk_tokens": 100}])
    new = source_config(db_url, models=[{**NULLM, "chunk_tokens": 80}])
    make_pairs(old)
    settings, old_chunking = recorded(conn, "nullm")
    make_pairs(new)  # no refusal: the vectors' settings are the same
    assert recorded(conn, "nullm") == (settings, recorded(conn, "nullm")[1])
    assert recorded(conn, "nullm")[1] != old_chunking
    assert "every document is embedded again" in capsys.readouterr().out
    open_app(new).close()


def test_a_pair_recorded_before_0012_gets_its_settings_filled_without_complaint(conn, db_url):
    old = source_config(db_url, models=[NULLM])
    make_pairs(old)
    conn.execute("UPDATE embedkeeper.pairs SET vector_settings = NULL")
    prefixed = source_config(db_url, models=[{**NULLM, "prefix": "query: "}])
    open_app(prefixed).close()  # nothing recorded: nothing to hold it to
    make_pairs(prefixed)
    assert recorded(conn, "nullm")[0] == settings_of(prefixed.models[0])
    with pytest.raises(VectorSettingsChanged, match="prefix 'query: ' -> ''"):
        open_app(old)


def two_sources(url: str, **model: Any) -> Any:
    document = {
        "sources": [{"table": "public.docs"}, {"name": "notes", "table": "public.notes"}],
        "models": [{**NULLM, **model}],
    }
    return parse_config(document, {"EMBEDKEEPER_DATABASE_URL": url}, path=Path("test.toml"))


def test_a_model_of_two_sources_is_refused_for_both_and_reembedded_in_one_migrate(conn, db_url):
    conn.execute("CREATE TABLE public.notes (id bigint PRIMARY KEY, body text)")
    make_pairs(two_sources(db_url))
    prefixed = two_sources(db_url, prefix="q: ")
    with pytest.raises(VectorSettingsChanged) as refused:
        make_pairs(prefixed, reembed=frozenset({("docs", "nullm")}))  # one alone: refused
    assert "--reembed notes nullm`" in str(refused.value)
    assert "--reembed docs nullm" not in str(refused.value)
    with pytest.raises(VectorSettingsChanged) as refused:
        open_app(prefixed)
    assert "migrate --reembed docs nullm --reembed notes nullm`" in str(refused.value)
    make_pairs(prefixed, reembed=frozenset({("docs", "nullm"), ("notes", "nullm")}))
    open_app(prefixed).close()
