"""The CocoIndex leg of bench/edit_cost.py, run in CocoIndex's own interpreter
(`python -m bench._edit_cost_cocoindex SPEC`, SPEC a JSON object: url, model, state): the
backfill and the same edits, one `update` each; prints its passes as one JSON line."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, make_dataclass
from pathlib import Path
from typing import Any

from bench.edit_cost import EDITS, Pass, _row


def cocoindex_main(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Run in the CocoIndex interpreter: the backfill and the edits, one `update` each."""
    os.environ["COCOINDEX_DB"] = spec["state"]
    os.environ["COCOINDEX_DISABLE_USAGE_TRACKING"] = "1"  # no network here anyway
    import asyncio

    import asyncpg  # type: ignore[import-not-found, unused-ignore]
    import cocoindex as coco  # type: ignore[import-not-found, unused-ignore]
    import numpy as np
    from cocoindex.connectors import postgres  # type: ignore[import-not-found, unused-ignore]
    from cocoindex.ops.sentence_transformers import (  # type: ignore[import-not-found, unused-ignore]
        SentenceTransformerEmbedder,
    )
    from cocoindex.ops.text import RecursiveSplitter  # type: ignore[import-not-found, unused-ignore]
    from cocoindex.resources.id import IdGenerator  # type: ignore[import-not-found, unused-ignore]
    from numpy.typing import NDArray
    from tokenizers import Tokenizer

    sent: list[str] = []
    embedder = SentenceTransformerEmbedder(spec["model"], device="cpu")
    splitter = RecursiveSplitter()
    db = coco.ContextKey[Any]("edit_cost_db")

    @coco.fn(memo=True)  # type: ignore[untyped-decorator, unused-ignore]
    async def embed_passage(text: str) -> Any:
        sent.append(text)  # runs only where the memo misses: what the model is sent
        return await embedder.embed(text)

    # Made, not declared: this module's annotations are strings, which CocoIndex would resolve.
    row_type = make_dataclass(
        "Row",
        [
            ("id", int),
            ("doc_id", int),
            ("chunk_start", int),
            ("chunk_end", int),
            ("text", str),
            ("embedding", NDArray[np.float32]),
        ],
    )
    doc_type = make_dataclass("Doc", [("id", int), ("body", str)])

    @coco.fn  # type: ignore[untyped-decorator, unused-ignore]
    async def process_chunk(chunk: Any, doc_id: int, id_gen: Any, table: Any) -> None:
        table.declare_row(
            row=row_type(
                id=await id_gen.next_id(chunk.text),
                doc_id=doc_id,
                chunk_start=chunk.start.char_offset,
                chunk_end=chunk.end.char_offset,
                text=chunk.text,
                embedding=await embed_passage(chunk.text),
            )
        )

    @coco.fn(memo=True)  # type: ignore[untyped-decorator, unused-ignore]
    async def process_doc(doc: Any, table: Any) -> None:
        chunks = splitter.split(doc.body, chunk_size=900, chunk_overlap=110)
        await coco.map(process_chunk, chunks, doc.id, IdGenerator(), table)

    @coco.fn  # type: ignore[untyped-decorator, unused-ignore]
    async def app_main() -> None:
        table = await postgres.mount_table_target(
            db,
            table_name="coco_chunks",
            table_schema=await postgres.TableSchema.from_class(
                row_type, primary_key=["id"], column_overrides={"embedding": embedder}
            ),
        )
        source = postgres.PgTableSource(coco.use_context(db), table_name="docs", row_type=doc_type)
        await coco.mount_each(process_doc, source.fetch_rows().items(lambda d: d.id), table)

    @coco.lifespan  # type: ignore[untyped-decorator, unused-ignore]
    async def lifespan(builder: Any) -> Any:
        async with asyncpg.create_pool(spec["url"]) as pool:
            builder.provide(db, pool)
            yield

    tokenizer = Tokenizer.from_file(str(Path(spec["model"]) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    app = coco.App(coco.AppConfig(name="EditCost"), app_main)
    passes = []
    for kind in ("backfill", *EDITS):
        texts = asyncio.run(_coco_texts(asyncpg, spec["url"], None if kind == "backfill" else kind))
        sent.clear()
        start = time.perf_counter()
        app.update_blocking()
        wall_s = time.perf_counter() - start
        tokens = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        sent_tokens = tokenizer.encode_batch_fast(sent, add_special_tokens=False)
        passes.append(
            asdict(
                Pass(
                    kind,
                    len(texts),
                    sum(map(len, texts)),
                    sum(len(e) for e in tokens),
                    wall_s,
                    sent_chars=sum(map(len, sent)),
                    sent_tokens=sum(len(e) for e in sent_tokens),
                    sent_inputs=len(sent),
                )
            )
        )
        print(f"cocoindex {_row(Pass(**passes[-1]))}", file=sys.stderr, flush=True)
    passes[-1]["run_extra"] = asyncio.run(_coco_rows(asyncpg, spec["url"]))
    return passes


async def _coco_rows(asyncpg: Any, url: str) -> dict[str, int]:
    """CocoIndex's table after the last update: its rows, and those whose text is not the current
    document's [chunk_start:chunk_end] (0 when it kept up with every edit)."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE c.text IS DISTINCT FROM substr(d.body,"
            " (c.chunk_start + 1)::int, (c.chunk_end - c.chunk_start)::int)) AS stale"
            " FROM coco_chunks c LEFT JOIN docs d ON d.id = c.doc_id"
        )
        return {"coco_rows": int(row["n"]), "coco_rows_not_current": int(row["stale"])}
    finally:
        await conn.close()


async def _coco_texts(asyncpg: Any, url: str, kind: str | None) -> list[str]:
    """The documents, edited by `kind` first (None: as they are)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT id, body FROM docs ORDER BY id")
        if kind is None:
            return [r["body"] for r in rows]
        edited = [(EDITS[kind](r["body"]), r["id"]) for r in rows]
        await conn.executemany("UPDATE docs SET body = $1 WHERE id = $2", edited)
        return [body for body, _ in edited]
    finally:
        await conn.close()


if __name__ == "__main__":
    print(json.dumps(cocoindex_main(json.loads(sys.argv[1]))))
