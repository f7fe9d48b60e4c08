"""One claimed batch through the backend: split into request-size parts, run `concurrency` at a
time, poison isolated by halving, vectors checked. No SQL: the store is only told what is in
flight and what to release."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from threading import Event

from embedkeeper.backends import Backend
from embedkeeper.errors import BackendUnavailable, InputRejected
from embedkeeper.records import Document, Embedded, Rejected, clean_message
from embedkeeper.sync.batching import halves, vector_problem


def embed_isolating_poison(
    backend: Backend, documents: Sequence[Document], dimensions: int
) -> tuple[list[Embedded], list[Rejected]]:
    """Embed a batch; when the backend rejects it, split it until the culprits stand alone, so
    one bad document never fails its neighbours. Vectors that are the wrong size, non-finite or
    zero are that document's failure and are never written."""
    try:
        results = backend.embed(documents)
    except InputRejected as exc:
        if len(documents) == 1:
            return [], [Rejected(documents[0], "InputRejected", clean_message(str(exc)))]
        embedded: list[Embedded] = []
        rejected: list[Rejected] = []
        for half in halves(documents):
            done, bad = embed_isolating_poison(backend, half, dimensions)
            embedded += done
            rejected += bad
        return embedded, rejected
    if len(results) != len(documents):
        raise BackendUnavailable(
            f"backend returned {len(results)} vectors for {len(documents)} documents"
        )
    good: list[Embedded] = []
    bad_vectors: list[Rejected] = []
    for result in results:
        problem = vector_problem(result.vector, dimensions)
        if problem is None:
            good.append(result)
        else:
            bad_vectors.append(Rejected(result.document, "InvalidVector", problem))
    return good, bad_vectors


@dataclass(slots=True)
class Outcome:
    """What became of a claimed batch: vectors, rejections, and the parts that could not be
    embedded (released uncharged) with the error that stopped them."""

    embedded: list[Embedded] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    unfinished: list[Document] = field(default_factory=list)
    error: BaseException | None = None


OnSlice = Callable[[int], None]  # told how many documents each part leaving the model held


def embed_claimed(
    backend: Backend,
    documents: Sequence[Document],
    dimensions: int,
    stop: Event | None = None,
    on_slice: OnSlice | None = None,
) -> Outcome:
    """Split a claimed batch into the backend's request size and embed the parts, up to
    `backend.concurrency` at a time (an embedding server works on several requests at once).
    A part that fails does not cost the parts that succeeded: they are still written.
    `on_slice` hears of each part the model finished, so progress moves within a batch."""
    size = max(1, backend.request_size)
    if len(documents) > size:
        # Parts of similar length: a model pads each batch to its longest text.
        documents = sorted(documents, key=lambda d: len(d.text))
    parts = [documents[i : i + size] for i in range(0, len(documents), size)]

    failed = Event()  # a part raised (an outage, a refusal): the others would meet it too

    def embed_part(part: Sequence[Document]) -> tuple[list[Embedded], list[Rejected]] | None:
        if (stop is not None and stop.is_set()) or failed.is_set():
            return None  # stopping: the parts not started yet are released, uncharged
        try:
            result = embed_isolating_poison(backend, part, dimensions)
        except BaseException:
            failed.set()
            raise
        if on_slice is not None:
            on_slice(len(part))
        return result

    outcome = Outcome()
    workers = min(backend.concurrency, len(parts))
    if workers <= 1:
        # One at a time: in this thread (starting a pool's thread costs milliseconds a batch
        # when another thread, such as the background prune, competes for the GIL).
        for part in parts:
            _collect(outcome, part, partial(embed_part, part))
        return outcome
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Each part runs in a copy of this context, so its log lines keep the run and batch ids.
        futures = [
            (part, pool.submit(contextvars.copy_context().run, embed_part, part)) for part in parts
        ]
        for part, future in futures:
            _collect(outcome, part, future.result)
    return outcome


def _collect(
    outcome: Outcome,
    part: Sequence[Document],
    result_of: Callable[[], tuple[list[Embedded], list[Rejected]] | None],
) -> None:
    """Add one part's result to the outcome; a part that raised or was not started is
    unfinished (released uncharged), and the first error is kept."""
    try:
        result = result_of()
    except BaseException as exc:
        outcome.unfinished += part
        outcome.error = outcome.error or exc
        return
    if result is None:
        outcome.unfinished += part
        return
    done, bad = result
    outcome.embedded += done
    outcome.rejected += bad


def isolate_suspects(documents: Sequence[Document]) -> list[list[Document]]:
    """The documents whose last batch died with its process go alone, one per batch, so that
    the next death is charged to the culprit only."""
    regular = [d for d in documents if not d.suspect]
    return ([regular] if regular else []) + [[d] for d in documents if d.suspect]
