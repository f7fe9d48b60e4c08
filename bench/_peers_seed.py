"""The seed design's loop, as a peer of embedkeeper in bench/peers.py: select 100 documents that
have no vector (LEFT JOIN ... IS NULL), one embedding call per text, one INSERT ... ON CONFLICT per
row, commit per batch; until a select returns nothing. It never looks at a text twice, so it never
sees an edit, and it never deletes.

Run as `python -m bench._peers_seed SPEC_JSON` (one leg, one process): the model is loaded and the
table created before the clock starts; the last line of stdout is the leg's JSON result.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg

BATCH = 100
CREATE = """
CREATE TABLE IF NOT EXISTS seed_embeddings (
    id bigint PRIMARY KEY,
    embedding vector(384) NOT NULL,
    embedded_at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""
PENDING = """
SELECT d.id, d.body FROM docs AS d LEFT JOIN seed_embeddings AS e ON e.id = d.id
WHERE e.id IS NULL ORDER BY d.id LIMIT %s"""
UPSERT = """
INSERT INTO seed_embeddings (id, embedding) VALUES (%s, %s)
ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, embedded_at = clock_timestamp()"""

Embed = Callable[[str], Any]


def sync(conn: psycopg.Connection[Any], embed: Embed) -> int:
    done = 0
    while rows := conn.execute(PENDING, (BATCH,)).fetchall():
        for doc_id, body in rows:
            conn.execute(UPSERT, (doc_id, np.asarray(embed(body), dtype=np.float32)))
        conn.commit()
        done += len(rows)
    conn.commit()
    return done


def local_embedder(model_path: str) -> Embed:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    model.encode(["warm-up"], show_progress_bar=False)

    def embed(text: str) -> Any:
        return model.encode(text, normalize_embeddings=True, show_progress_bar=False)

    return embed


def ollama_embedder(url: str, model: str) -> Embed:
    import httpx

    client = httpx.Client(base_url=url, timeout=60.0)

    def embed(text: str) -> Any:
        response = client.post("/api/embed", json={"model": model, "input": text})
        response.raise_for_status()
        return response.json()["embeddings"][0]

    return embed


def main(spec: dict[str, Any]) -> dict[str, Any]:
    from pgvector.psycopg import register_vector

    start = time.perf_counter()
    if spec["embed"] == "ollama":
        embed = ollama_embedder(spec["ollama_url"], spec["ollama_model"])
    else:
        embed = local_embedder(spec["model_path"])
    with psycopg.connect(spec["url"]) as conn:
        conn.execute(CREATE)
        conn.commit()
        register_vector(conn)
        setup_s = time.perf_counter() - start
        start = time.perf_counter()
        done = sync(conn, embed)
        sync_s = time.perf_counter() - start
    return {"setup_s": setup_s, "sync_s": sync_s, "embedded": done}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
