"""LangChain's own way to keep a vector store in sync, as one leg of bench/peers.py:
`langchain_core.indexing.index()` with `SQLRecordManager` (langchain-community) and `PGVector`
(langchain-postgres), `cleanup="incremental"`, `source_id_key` the document's id.

A LangChain user's sync loads every document from the table and hands them all to index(), which
hashes each one and asks the record manager which are new; loading is part of its cost, so it is
timed. The embeddings (HuggingFaceEmbeddings on embedkeeper's MiniLM files, or
DeterministicFakeEmbedding) and the stores are built before the clock starts.

This file runs in its own virtualenv (.venv-langchain: langchain-postgres pins pgvector<0.4,
embedkeeper needs >=0.4), so it imports nothing of embedkeeper or of the bench package:
`.venv-langchain/bin/python bench/_peers_langchain.py SPEC_JSON`; the last line of stdout is the
leg's JSON result.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from typing import Any

import psycopg

COLLECTION = "docs"
NAMESPACE = "pgvector/docs"


def embeddings_for(spec: dict[str, Any]) -> Any:
    if spec["embedding"] == "fake":
        from langchain_core.embeddings import DeterministicFakeEmbedding

        return DeterministicFakeEmbedding(size=384)
    from langchain_huggingface import HuggingFaceEmbeddings

    embeddings = HuggingFaceEmbeddings(
        model_name=spec["model_path"],
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "batch_size": spec.get("batch_size", 32)},
    )
    embeddings.embed_documents(["warm-up"])
    return embeddings


def main(spec: dict[str, Any]) -> dict[str, Any]:
    # langchain-community keeps it in a private module; langchain-classic re-exports it
    from langchain_community.indexes._sql_record_manager import SQLRecordManager
    from langchain_core.documents import Document
    from langchain_core.indexing import index
    from langchain_postgres import PGVector

    start = time.perf_counter()
    url = spec["url"].replace("postgresql://", "postgresql+psycopg://", 1)
    store = PGVector(
        embeddings=embeddings_for(spec), collection_name=COLLECTION, connection=url, use_jsonb=True
    )
    records = SQLRecordManager(NAMESPACE, db_url=url)
    records.create_schema()
    setup_s = time.perf_counter() - start

    start = time.perf_counter()
    with psycopg.connect(spec["url"]) as conn:
        rows = conn.execute("SELECT id, body FROM docs ORDER BY id").fetchall()
    documents = [Document(page_content=body, metadata={"doc_id": str(key)}) for key, body in rows]
    result = index(documents, records, store, cleanup="incremental", source_id_key="doc_id")
    sync_s = time.perf_counter() - start
    return {"setup_s": setup_s, "sync_s": sync_s, "loaded": len(documents), **dict(result)}


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    print(json.dumps(main(json.loads(sys.argv[1]))))
