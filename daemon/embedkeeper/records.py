"""The records that flow through one pass: a claimed document, its vector, or its failure."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DocumentId = int | str | UUID


@dataclass(frozen=True, slots=True)
class Document:
    """A claimed document. `text` is at most a prefix of the stored text (`cut` says whether it
    was cut): a model window is far smaller, and this keeps memory bounded for texts of many MB.
    `content_hash` is PostgreSQL's md5 of the whole stored text."""

    id: DocumentId
    text: str
    cut: bool
    content_hash: bytes
    updated_at: datetime | None = None
    suspect: bool = False  # its last batch died with its process: embed it alone
    # The tokens the model will see, where the chunker counted them (a chunk that fits the
    # window by construction); None: the backend counts.
    token_count: int | None = None
    # Its record was made under this pass's vector settings: the vectors of its passages that
    # are still in the text may be kept (sync/chunked.py) rather than embedded again.
    reusable: bool = False


@dataclass(frozen=True, slots=True)
class Embedded:
    document: Document
    vector: npt.NDArray[np.float32]
    token_count: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class EmbeddedChunk:
    """One passage of a document and its vector; the passage is text[start:end]."""

    seq: int
    start: int
    end: int
    text: str
    vector: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ChunkedEmbedding:
    """A whole document's vectors: every chunk the chunker made, written together or not at all.
    `chunking` is the chunker's fingerprint, so a change of settings makes the record stale."""

    document: Document
    chunking: str
    chunks: tuple[EmbeddedChunk, ...]
    token_count: int  # the tokens the model sees of all its chunks, sent or reused
    truncated: bool
    # Of those, the chunks (and their tokens) whose vectors the document already had for the
    # same passage and vector settings: kept, never sent to the model (sync/chunked.py).
    reused_chunks: int = 0
    reused_tokens: int = 0

    @property
    def embedded_tokens(self) -> int:
        """The tokens the model was sent for this document."""
        return self.token_count - self.reused_tokens


@dataclass(frozen=True, slots=True)
class Rejected:
    document: Document
    error_class: str
    message: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claim's result: the documents we hold, and the last key the query looked at."""

    documents: list[Document]
    last_key: object | None  # the store's cursor: where its next claim starts
    held: int = 0  # pending documents a peer held, passed over


@dataclass(slots=True)
class RunStats:
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # claimed but not written: a peer did it, or the text changed meanwhile
    tokens: int = 0  # tokens sent to the model
    chunks: int = 0  # chunks sent to the model (of documents written)
    reused_chunks: int = 0  # chunks whose stored vector was kept: never sent
    reused_tokens: int = 0  # their tokens
    batches: int = 0
    drained: bool = False  # a whole sweep claimed nothing: everything looked at was done
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None  # set when the pass ends: its rates stop moving then

    @property
    def done(self) -> int:
        """Documents this pass is through with: written, failed, or skipped."""
        return self.ok + self.failed + self.skipped

    def merged(self, later: RunStats) -> RunStats:
        """These counts followed by a later attempt's: one pass's totals across outages."""
        return RunStats(
            ok=self.ok + later.ok,
            failed=self.failed + later.failed,
            skipped=self.skipped + later.skipped,
            tokens=self.tokens + later.tokens,
            chunks=self.chunks + later.chunks,
            reused_chunks=self.reused_chunks + later.reused_chunks,
            reused_tokens=self.reused_tokens + later.reused_tokens,
            batches=self.batches + later.batches,
            drained=later.drained,
            started=self.started,
            finished=later.finished,
        )

    def finish(self) -> None:
        """The pass is over: a summary printed later (a backfill's, after its other pairs)
        gives this pass's own time and rates."""
        self.finished = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        end = time.monotonic() if self.finished is None else self.finished
        return max(end - self.started, 1e-9)

    @property
    def docs_per_s(self) -> float:
        return self.ok / self.elapsed_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s


def clean_message(text: str, limit: int = 500) -> str:
    """An error text fit for the failures table: no NUL, bounded length."""
    text = text.replace("\x00", "").strip() or "no message"
    return text if len(text) <= limit else text[: limit - 1] + "…"
