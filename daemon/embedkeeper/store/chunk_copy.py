"""A batch of chunks as one block of PostgreSQL's binary COPY format, built with numpy and struct.

psycopg's `write_row` costs several microseconds a row in Python; at a million chunks that is a
large share of the null backend's pass. Every chunk row has the same fields: a bigint or uuid
key, three int4 (chunk number, start, end), the passage and a vector of the pair's size. Only the
passage varies in length, so each row is a fixed head packed by one precompiled struct, the
passage's bytes, and the vector's bytes sliced from one big-endian array. Anything else (a text
key, vectors of several sizes, a client encoding other than UTF-8) returns None and the writer
goes row by row.

The layout (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format"): a signature
and two int32 header fields, then per row an int16 field count and per field an int32 length and
the value in the type's binary send format, then an int16 -1. pgvector sends a vector as int16
dimensions, int16 unused, then float4 values; text is its bytes in the client encoding. Every
number is big-endian.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence

import numpy as np

from embedkeeper.records import ChunkedEmbedding

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
FIELDS = 6  # document_id, chunk, char_start, char_end, passage, embedding
# Field count, the key (length, value), three int4 (length, value), the passage's length.
_BIGINT_HEAD = struct.Struct(">hiqiiiiiii")
_UUID_HEAD = struct.Struct(">hi16siiiiiii")


def chunks_block(embedded: Sequence[ChunkedEmbedding], id_type: str, encoding: str) -> bytes | None:
    """The whole COPY stream of these documents' chunks, or None where the rows are not all of
    one shape (the caller then writes them row by row)."""
    if id_type not in ("bigint", "uuid") or encoding.replace("-", "").lower() != "utf8":
        return None
    chunks = [(e.document.id, c) for e in embedded for c in e.chunks]
    if not chunks:
        return None
    dims = {len(c.vector) for _, c in chunks}
    if len(dims) != 1:
        return None
    (dim,) = dims
    stride = 4 * dim
    vectors = np.stack([np.asarray(c.vector, dtype=np.float32) for _, c in chunks])
    vector_bytes = memoryview(vectors.astype(">f4").tobytes())
    vector_head = struct.pack(">ihh", 4 + stride, dim, 0)
    parts: list[bytes | memoryview] = [SIGNATURE]
    append = parts.append
    if id_type == "bigint":
        pack = _BIGINT_HEAD.pack
        for i, (key, c) in enumerate(chunks):
            passage = c.text.encode()
            append(pack(FIELDS, 8, key, 4, c.seq, 4, c.start, 4, c.end, len(passage)))
            append(passage)
            append(vector_head)
            append(vector_bytes[i * stride : (i + 1) * stride])
    else:
        pack = _UUID_HEAD.pack
        for i, (key, c) in enumerate(chunks):
            if not isinstance(key, uuid.UUID):
                return None
            passage = c.text.encode()
            append(pack(FIELDS, 16, key.bytes, 4, c.seq, 4, c.start, 4, c.end, len(passage)))
            append(passage)
            append(vector_head)
            append(vector_bytes[i * stride : (i + 1) * stride])
    append(TRAILER)
    return b"".join(parts)
