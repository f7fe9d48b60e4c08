"""A claimed batch of whole documents through the chunker and the backend (issue 13, step 3).

Each document is cut into chunks that fit the model's window; the chunks of the whole batch are
embedded together as one batch (embedding.py sorts them by length and splits them into the
backend's request size, so a long document fills whole requests rather than padding short ones).
A document is done when every one of its chunks has its vector: a chunk the backend rejects fails
its document (and only it, as poison isolation does for whole documents), and a chunk left
unfinished by an outage or a stop leaves its document unfinished, released uncharged. A batch of
long documents is chunked a group at a time on threads, ahead of the model (the tokenizer releases
the GIL): the chunker's time hides behind the model's, and a batch of
much text is chunked on several threads at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Event
from typing import TYPE_CHECKING

from embedkeeper.backends import Backend
from embedkeeper.chunking import Chunk, Chunker
from embedkeeper.chunking.chunker import CHARS_PER_TOKEN
from embedkeeper.records import ChunkedEmbedding, Document, DocumentId, EmbeddedChunk, Rejected
from embedkeeper.sync.embedding import OnSlice, embed_claimed
from embedkeeper.sync.store import Store

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# What the store holds for each (document, passage) asked: the vector, or None.
StoredVectors = Callable[[Sequence[tuple[DocumentId, str]]], "list[npt.NDArray[np.float32] | None]"]

# The tokenizer releases the GIL, so a batch's text is chunked on several threads at once: on a
# GPU one core does not keep up with the model (the chunker makes about 4,500 chunks a
# CPU-second, bench/chunker.py; a GPU embeds thousands), and with a fast backend the chunker
# would otherwise be the pass's longest step. A slice of less text than SLICE_CHARS (about 100
# chunks) is not worth a thread of its own; a claim of a local model's default size (about a
# million characters) is spread on up to ten.
CHUNK_THREADS = max(1, min(16, os.cpu_count() or 1))
SLICE_CHARS = 100_000


@dataclass(slots=True)
class ChunkedOutcome:
    """What became of a batch of whole documents."""

    embedded: list[ChunkedEmbedding] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    unfinished: list[Document] = field(default_factory=list)
    error: BaseException | None = None
    chunks: int = 0  # chunks sent to the backend


@dataclass(frozen=True, slots=True)
class _Piece:
    """Where a chunk sent to the backend came from."""

    index: int  # the document's place in the batch
    chunk: Chunk


def embed_chunked(
    backend: Backend,
    documents: Sequence[Document],
    chunker: Chunker,
    dimensions: int,
    stop: Event | None = None,
    on_slice: OnSlice | None = None,
    stored: StoredVectors | None = None,
) -> ChunkedOutcome:
    """Chunk and embed a batch. A batch of more text than one round of requests holds is cut
    into groups of documents; a thread chunks the groups in turn, ahead of the model, so that
    the chunker's time hides behind the model's (the first group is one round, so the model
    waits for little). An outage or a stop leaves the groups after it unfinished."""
    groups = _groups(documents, _group_chars(backend, chunker))
    threads = _chunk_threads(documents)
    if len(groups) == 1 and threads == 1:
        whole = chunker.split_many([d.text for d in documents])
        return _embed_group(backend, documents, whole, chunker, dimensions, stop, on_slice, stored)
    outcome = ChunkedOutcome()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chunker")
    try:
        splits_of = [_split_in(pool, chunker, group, threads) for group in groups]
        for index, group in enumerate(groups):
            if outcome.error is not None or (stop is not None and stop.is_set()):
                outcome.unfinished += group  # released uncharged, for the next try
                continue
            done = _embed_group(
                backend, group, splits_of[index](), chunker, dimensions, stop, on_slice, stored
            )
            outcome.embedded += done.embedded
            outcome.rejected += done.rejected
            outcome.unfinished += done.unfinished
            outcome.error = outcome.error or done.error
            outcome.chunks += done.chunks
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # at most the slices being chunked
    return outcome


def _chunk_threads(documents: Sequence[Document]) -> int:
    """Threads for chunking this batch: one per SLICE_CHARS of text, at most CHUNK_THREADS."""
    chars = sum(len(d.text) for d in documents)
    return max(1, min(CHUNK_THREADS, chars // SLICE_CHARS))


def _split_in(
    pool: ThreadPoolExecutor, chunker: Chunker, group: Sequence[Document], threads: int
) -> Callable[[], list[tuple[list[Chunk], bool]]]:
    """Chunk the group in up to `threads` slices of about equal text on the pool; returns the
    call that waits for them and gives the group's splits in order."""
    texts = [d.text for d in group]
    per_slice = max(1, sum(len(t) for t in texts) // threads)
    futures, start, chars = [], 0, 0
    for index, text in enumerate(texts):
        chars += len(text)
        if chars >= per_slice or index + 1 == len(texts):
            futures.append(pool.submit(chunker.split_many, texts[start : index + 1]))
            start, chars = index + 1, 0

    def gather() -> list[tuple[list[Chunk], bool]]:
        return [split for future in futures for split in future.result()]

    return gather


def _group_chars(backend: Backend, chunker: Chunker) -> int:
    """The text of one round of requests: `concurrency` requests of `request_size` full
    chunks (0: chunking is free, one group)."""
    return max(1, backend.request_size) * max(1, backend.concurrency) * chunker.chunk_chars


def _groups(documents: Sequence[Document], first_chars: int) -> list[Sequence[Document]]:
    """The documents in order, in groups of about `first_chars` characters, then twice that
    (fewer, larger calls sort better by length; the first is small so the model starts soon)."""
    if first_chars <= 0:
        return [documents]
    groups: list[Sequence[Document]] = []
    start, chars, limit = 0, 0, first_chars
    for index, document in enumerate(documents):
        chars += len(document.text)
        if chars >= limit and index + 1 < len(documents):
            groups.append(documents[start : index + 1])
            start, chars, limit = index + 1, 0, 2 * first_chars
    groups.append(documents[start:])
    return groups


def _embed_group(
    backend: Backend,
    documents: Sequence[Document],
    splits: list[tuple[list[Chunk], bool]],
    chunker: Chunker,
    dimensions: int,
    stop: Event | None,
    on_slice: OnSlice | None,
    stored: StoredVectors | None,
) -> ChunkedOutcome:
    kept = _kept_vectors(documents, splits, stored)
    pieces: dict[int, _Piece] = {}  # id() of the chunk's stand-in document -> its origin
    stand_ins: list[Document] = []
    for index, (document, (chunks, _capped)) in enumerate(zip(documents, splits, strict=True)):
        for chunk in chunks:
            if (index, chunk.seq) in kept:
                continue
            # The backend sees each chunk as a document of its own; `suspect` and the hash are
            # the document's, so a crash or a failure is still charged to the document.
            stand_in = Document(
                document.id,
                chunk.text,
                False,
                document.content_hash,
                document.updated_at,
                document.suspect,
                chunker.model_tokens(chunk),
            )
            pieces[id(stand_in)] = _Piece(index, chunk)
            stand_ins.append(stand_in)
    result = embed_claimed(
        backend, stand_ins, dimensions, stop, _in_documents(on_slice, len(documents), stand_ins)
    )

    vectors, reused_chunks, reused_tokens = _kept_chunks(kept, splits, chunker)
    tokens = list(reused_tokens)
    cut_by_model = [False] * len(documents)
    for embedded in result.embedded:
        piece = pieces[id(embedded.document)]
        c = piece.chunk
        vectors[piece.index][c.seq] = EmbeddedChunk(c.seq, c.start, c.end, c.text, embedded.vector)
        tokens[piece.index] += embedded.token_count
        cut_by_model[piece.index] |= embedded.truncated
    failed: dict[int, Rejected] = {}
    for rejected in result.rejected:
        piece = pieces[id(rejected.document)]
        if piece.index not in failed:
            total = len(splits[piece.index][0])
            message = f"chunk {piece.chunk.seq + 1} of {total}: {rejected.message}"
            failed[piece.index] = Rejected(documents[piece.index], rejected.error_class, message)
    unfinished = {pieces[id(d)].index for d in result.unfinished}

    outcome = ChunkedOutcome(error=result.error, chunks=len(stand_ins))
    for index, document in enumerate(documents):
        chunks, capped = splits[index]
        if index in unfinished:
            outcome.unfinished.append(document)
        elif index in failed:
            outcome.rejected.append(failed[index])
        else:
            done = tuple(vectors[index][c.seq] for c in chunks)
            outcome.embedded.append(
                ChunkedEmbedding(
                    document,
                    chunker.fingerprint,
                    done,
                    tokens[index],
                    truncated=capped or document.cut or cut_by_model[index],
                    reused_chunks=reused_chunks[index],
                    reused_tokens=reused_tokens[index],
                )
            )
    return outcome


def _kept_vectors(
    documents: Sequence[Document],
    splits: list[tuple[list[Chunk], bool]],
    stored: StoredVectors | None,
) -> dict[tuple[int, int], npt.NDArray[np.float32]]:
    """The chunks whose vectors the documents already have, by (place in the batch, seq): a
    passage equal to one of the document's stored passages, under the same vector settings
    (the model, its prefix, normalisation and window), has the same vector, so it is kept and
    not sent. Asked of the store once for the group, for documents claimed as reusable."""
    if stored is None:
        return {}
    wanted = [
        (index, chunk)
        for index, (document, (chunks, _)) in enumerate(zip(documents, splits, strict=True))
        if document.reusable
        for chunk in chunks
    ]
    if not wanted:
        return {}
    found = stored([(documents[index].id, chunk.text) for index, chunk in wanted])
    return {
        (index, chunk.seq): vector
        for (index, chunk), vector in zip(wanted, found, strict=True)
        if vector is not None
    }


def _kept_chunks(
    kept: dict[tuple[int, int], npt.NDArray[np.float32]],
    splits: list[tuple[list[Chunk], bool]],
    chunker: Chunker,
) -> tuple[list[dict[int, EmbeddedChunk]], list[int], list[int]]:
    """The kept vectors as each document's chunks by seq, and each document's count of kept
    chunks and of their tokens."""
    vectors: list[dict[int, EmbeddedChunk]] = [{} for _ in splits]
    chunks = [0] * len(splits)
    tokens = [0] * len(splits)
    for (index, seq), vector in kept.items():
        c = splits[index][0][seq]
        vectors[index][seq] = EmbeddedChunk(c.seq, c.start, c.end, c.text, vector)
        chunks[index] += 1
        tokens[index] += _tokens_of(chunker, c)
    return vectors, chunks, tokens


def _tokens_of(chunker: Chunker, chunk: Chunk) -> int:
    """The tokens the model would have seen of a kept chunk: the chunker's count, else (no
    tokenizer) an estimate at CHARS_PER_TOKEN characters a token."""
    counted = chunker.model_tokens(chunk)
    return counted if counted is not None else max(1, len(chunk.text) // CHARS_PER_TOKEN)


def _in_documents(
    on_slice: OnSlice | None, documents: int, chunks: list[Document]
) -> OnSlice | None:
    """Progress is counted in documents: each part of chunks the model finishes moves it by
    its share of the batch's documents."""
    if on_slice is None:
        return None
    if not chunks:  # every chunk kept: the documents are through at once
        on_slice(documents)
        return on_slice
    total, done, told = len(chunks), 0, 0

    def tell(part: int) -> None:
        nonlocal done, told
        done += part
        now = documents * done // total
        if now > told:
            on_slice(now - told)
            told = now

    return tell


def embed_chunked_batch(
    store: Store,
    backend: Backend,
    chunker: Chunker,
    documents: Sequence[Document],
    dimensions: int,
    stop: Event | None = None,
    on_slice: OnSlice | None = None,
) -> ChunkedOutcome:
    """Embed one batch of whole documents, recorded as in flight while the backend has it (a
    death meanwhile is charged to its documents); the documents it could not finish are
    released at once."""
    token = store.begin(documents)
    outcome = embed_chunked(
        backend, documents, chunker, dimensions, stop, on_slice, store.stored_vectors
    )
    store.release(outcome.unfinished)
    store.end(token)
    return outcome
