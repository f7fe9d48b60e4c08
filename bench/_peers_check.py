"""The change set of issue 7 point 3, and what each system's store says afterwards, read from the
database: which edits, insertions and deletions it picked up, and how close its vectors are to
embedkeeper's.

The change set on public.docs (ids 1..N): every id divisible by 100 edited (text and updated_at,
1%), N/200 documents added after N (0.5%), every id that is 7 modulo 500 deleted (0.2%).

Each system's store is read as rows (id, fresh): fresh when the vector belongs to the document's
current text. embedkeeper and LangChain keep the text's hash or the text itself, so that is exact;
the seed loop keeps neither, so its vector is fresh when it was written after the document's
updated_at.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from embedkeeper.models.pairs import pair_base_name

EDITED = "s.id %% 100 = 0 AND s.id <= %(top)s"
DELETED = "id %% 500 = 7 AND id <= %(top)s"

# (id, fresh, embedding) per system, one row per document. embedkeeper's are its pair's
# tables (embedkeeper.<docs__model>_documents and _chunks): a document's record, with its chunk
# 0's vector only when that chunk is the whole text (the others have no vector of the text to
# compare, so `vectors` leaves them out).
STORES = {
    "embedkeeper": """
        SELECT e.document_id AS id,
               CASE WHEN e.chunk_count = 1 THEN c.embedding END AS embedding,
               e.content_hash = (SELECT decode(md5(s.body), 'hex') FROM docs AS s
                                 WHERE s.id = e.document_id) AS fresh
        FROM {documents} AS e
        LEFT JOIN {chunks} AS c ON c.document_id = e.document_id AND c.chunk = 0""",
    "langchain": """
        SELECT (l.cmetadata ->> 'doc_id')::bigint AS id, l.embedding,
               l.document = (SELECT s.body FROM docs AS s
                             WHERE s.id = (l.cmetadata ->> 'doc_id')::bigint) AS fresh
        FROM langchain_pg_embedding AS l""",
    "seed loop": """
        SELECT e.id, e.embedding,
               (SELECT s.updated_at <= e.embedded_at FROM docs AS s WHERE s.id = e.id) AS fresh
        FROM seed_embeddings AS e""",
}

COUNTS = """
WITH v AS ({store})
SELECT (SELECT count(*) FROM docs AS s WHERE {edited}),
       (SELECT count(DISTINCT v.id) FROM v JOIN docs AS s ON s.id = v.id
        WHERE {edited} AND v.fresh),
       (SELECT count(*) FROM docs WHERE id > %(top)s),
       (SELECT count(DISTINCT id) FROM v WHERE id > %(top)s),
       (SELECT count(DISTINCT id) FROM v WHERE {deleted}),
       (SELECT count(*) FROM v),
       (SELECT count(*) FROM docs),
       (SELECT count(*) FROM docs AS s WHERE NOT EXISTS (
            SELECT 1 FROM v WHERE v.id = s.id AND v.fresh))
"""


@dataclass(frozen=True, slots=True)
class Picked:
    edits: str  # "picked/total"
    inserts: str
    deletes: str  # "removed/total"
    vectors: int
    documents: int
    not_current: int  # documents without a vector of their current text

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def top_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT max(id) FROM docs").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def apply_change_set(url: str, top: int) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        edited = conn.execute(
            "UPDATE docs SET body = body || ' (edited)', updated_at = clock_timestamp()"
            " WHERE id %% 100 = 0 AND id <= %(top)s",
            {"top": top},
        ).rowcount
        added = conn.execute(
            "INSERT INTO docs (id, body) SELECT %(top)s + id, 'new: ' || body FROM docs"
            " WHERE id <= %(new)s",
            {"top": top, "new": top // 200},
        ).rowcount
        deleted = conn.execute(
            "DELETE FROM docs WHERE id %% 500 = 7 AND id <= %(top)s", {"top": top}
        ).rowcount
    return {"edited": edited, "added": added, "deleted": deleted}


def _store(system: str, model: str) -> sql.Composable:
    """The system's (id, fresh, embedding) rows; `model` names embedkeeper's pair."""
    if system != "embedkeeper":
        return sql.SQL(STORES[system])
    base = pair_base_name("docs", model)
    return sql.SQL(STORES[system]).format(
        documents=sql.Identifier("embedkeeper", f"{base}_documents"),
        chunks=sql.Identifier("embedkeeper", f"{base}_chunks"),
    )


def picked(url: str, system: str, top: int, model: str = "") -> Picked:
    query = sql.SQL(COUNTS).format(
        store=_store(system, model), edited=sql.SQL(EDITED), deleted=sql.SQL(DELETED)
    )
    with psycopg.connect(url) as conn:
        row = conn.execute(query, {"top": top}).fetchone()
    assert row is not None
    edits, edits_got, news, news_got, deleted_left, vectors, documents, missing = row
    deleted_total = top // 500 + (1 if top % 500 >= 7 else 0)
    return Picked(
        edits=f"{edits_got}/{edits}",
        inserts=f"{news_got}/{news}",
        deletes=f"{deleted_total - deleted_left}/{deleted_total}",
        vectors=vectors,
        documents=documents,
        not_current=missing,
    )


def vectors(url: str, system: str, model: str = "") -> dict[int, np.ndarray[Any, Any]]:
    """The vectors of current texts only, by document id."""
    query = sql.SQL(
        "SELECT id, embedding::real[] FROM ({}) AS v WHERE v.fresh AND v.embedding IS NOT NULL"
    ).format(_store(system, model))
    with psycopg.connect(url) as conn:
        rows = conn.execute(query).fetchall()
    return {int(key): np.asarray(vector, dtype=np.float64) for key, vector in rows}


def cosines(ours: dict[int, np.ndarray[Any, Any]], theirs: dict[int, np.ndarray[Any, Any]]) -> Any:
    """min and median cosine over the documents both hold, and how many fall under 0.999."""
    common = sorted(ours.keys() & theirs.keys())
    if not common:
        return {"compared": 0}
    a = np.stack([ours[k] for k in common])
    b = np.stack([theirs[k] for k in common])
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {
        "compared": len(common),
        "min": round(float(cos.min()), 6),
        "median": round(float(np.median(cos)), 6),
        "under_0.999": int((cos < 0.999).sum()),
    }
