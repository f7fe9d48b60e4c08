"""A batch of chunks as one block of PostgreSQL's binary COPY format, built with numpy and struct.

psycopg's `write_row` costs several microseconds a row in Python; at a million chunks that is a
large share of the null backend's pass. Every chunk row has the same fields: a key (bigint,
uuid or text), three int4 (chunk number, start, end), the passage and a vector of the pair's size
and storage. Each row is its key, its numbers packed by one precompiled struct, the passage's
bytes, and the vector's bytes sliced from one big-endian array of all the batch's vectors.
Anything else (vectors of several sizes, a client encoding other than UTF-8) returns None and the
writer goes row by row.

The layout (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format"): a signature
and two int32 header fields, then per row an int16 field count and per field an int32 length and
the value in the type's binary send format, then an int16 -1. pgvector sends a vector as int16
dimensions, int16 unused, then float4 values (a halfvec: float2 values); text is its bytes in
the client encoding. Every number is big-endian.
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
# After the key: three int4 (length, value each) and the passage's length.
_NUMBERS = struct.Struct(">iiiiiii")
_BIGINT_KEY = struct.Struct(">hiq")  # the field count, the key's length and value
_FIELDS_AND_LENGTH = struct.Struct(">hi")  # the field count and a uuid's or a text key's length
# Each storage's element type in numpy, big-endian: pgvector's binary formats.
ELEMENTS = {"vector": ">f4", "halfvec": ">f2"}


def chunks_block(
    embedded: Sequence[ChunkedEmbedding], id_type: str, storage: str, encoding: str
) -> bytes | None:
    """The whole COPY stream of these documents' chunks, for a chunks table whose key is
    `id_type` and whose vectors are `storage` ("vector" or "halfvec"), or None where the rows
    are not all of one shape (the caller then writes them row by row)."""
    if encoding.replace("-", "").lower() != "utf8" or storage not in ELEMENTS:
        return None
    chunks = [(e.document.id, c) for e in embedded for c in e.chunks]
    if not chunks:
        return None
    dims = {len(c.vector) for _, c in chunks}
    if len(dims) != 1:
        return None
    (dim,) = dims
    element = np.dtype(ELEMENTS[storage])
    stride = element.itemsize * dim
    vectors = np.stack([np.asarray(c.vector, dtype=np.float32) for _, c in chunks])
    vector_bytes = memoryview(vectors.astype(element).tobytes())
    vector_head = struct.pack(">ihh", 4 + stride, dim, 0)
    numbers = _NUMBERS.pack
    parts: list[bytes | memoryview] = [SIGNATURE]
    append = parts.append
    for i, (key, c) in enumerate(chunks):
        head = _key(key, id_type)
        if head is None:
            return None
        passage = c.text.encode()
        append(head)
        append(numbers(4, c.seq, 4, c.start, 4, c.end, len(passage)))
        append(passage)
        append(vector_head)
        append(vector_bytes[i * stride : (i + 1) * stride])
    append(TRAILER)
    return b"".join(parts)


def _key(key: object, id_type: str) -> bytes | None:
    """The row's field count and its key field, or None for a key of an unexpected type."""
    if id_type == "bigint" and isinstance(key, int):
        return _BIGINT_KEY.pack(FIELDS, 8, key)
    if id_type == "uuid" and isinstance(key, uuid.UUID):
        return _FIELDS_AND_LENGTH.pack(FIELDS, 16) + key.bytes
    if id_type == "text" and isinstance(key, str):
        encoded = key.encode()
        return _FIELDS_AND_LENGTH.pack(FIELDS, len(encoded)) + encoded
    return None
