"""One claimed batch through the backend: split into request-size parts, run `concurrency` at a
time, poison isolated, vectors checked. No SQL: the store is only told what is in flight and
what to release.

Poison isolation: a server that refuses a request does not say which input it could not take.
After a refused request of several inputs each is sent once more, alone: a request of two or
more could hold a culprit and fail again, and only a request of one cannot fail for another's
input, so a good input reaches the backend at most twice in an attempt (halving sent it again
at every level). Chunks stand in for their documents (sync/chunked.py), several sharing a
document's id, and one rejected chunk fails its document: a chunk whose document already had a
chunk rejected in this batch is not sent at all, and is rejected after that real rejection, so
that the document's first rejection is the real one."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from threading import Event

from embedkeeper.backends import Backend
from embedkeeper.errors import BackendUnavailable, InputRejected
from embedkeeper.records import Document, DocumentId, Embedded, Rejected, clean_message
from embedkeeper.sync.batching import vector_problems


class Refusals:
    """The documents of a batch already rejected, by the id their chunks share, across its
    parts and their threads; and which rejections are of chunks not sent for that reason."""

    def __init__(self) -> None:
        self._first: dict[DocumentId, Rejected] = {}
        self._skipped: set[int] = set()  # id() of the stand-ins not sent
        self._lock = threading.Lock()

    def add(self, rejected: list[Rejected]) -> list[Rejected]:
        with self._lock:
            for r in rejected:
                self._first.setdefault(r.document.id, r)
        return rejected

    def sort_out(self, documents: Sequence[Document]) -> tuple[list[Document], list[Rejected]]:
        """The documents still worth sending, and the rejections of those whose document was
        rejected already (not sent: the document fails anyway)."""
        to_send: list[Document] = []
        skipped: list[Rejected] = []
        with self._lock:
            for document in documents:
                first = self._first.get(document.id)
                if first is None:
                    to_send.append(document)
                    continue
                self._skipped.add(id(document))
                message = f"not sent: another chunk of its document was rejected: {first.message}"
                skipped.append(Rejected(document, first.error_class, clean_message(message)))
        return to_send, skipped

    def real_first(self, rejected: list[Rejected]) -> list[Rejected]:
        """The rejections in their order, those of the documents not sent last."""
        with self._lock:
            return sorted(rejected, key=lambda r: id(r.document) in self._skipped)


def embed_isolating_poison(
    backend: Backend,
    documents: Sequence[Document],
    dimensions: int,
    refusals: Refusals | None = None,
) -> tuple[list[Embedded], list[Rejected]]:
    """Embed a part; when the backend rejects it, send each of its documents once more, alone,
    so one bad document never fails its neighbours. A document whose id `refusals` holds (a
    sibling chunk was rejected) is not sent. Vectors that are the wrong size, non-finite or
    zero are that document's failure and are never written."""
    refusals = refusals if refusals is not None else Refusals()
    to_send, skipped = refusals.sort_out(documents)
    if not to_send:
        return [], skipped
    try:
        embedded, rejected = _embed(backend, to_send, dimensions)
    except InputRejected as exc:
        if len(to_send) > 1:
            embedded, rejected, skipped = _alone(backend, to_send, dimensions, refusals, skipped)
        else:
            embedded, rejected = [], [_refused(to_send[0], exc)]
    return embedded, refusals.add(rejected) + skipped


def _alone(
    backend: Backend,
    documents: Sequence[Document],
    dimensions: int,
    refusals: Refusals,
    skipped: list[Rejected],
) -> tuple[list[Embedded], list[Rejected], list[Rejected]]:
    """Each document of a rejected request once more, in a request of its own, in turn; a
    document whose sibling is rejected meanwhile is not sent."""
    embedded: list[Embedded] = []
    rejected: list[Rejected] = []
    for document in documents:
        to_send, not_sent = refusals.sort_out([document])
        skipped = skipped + not_sent
        if not to_send:
            continue
        try:
            done, bad = _embed(backend, to_send, dimensions)
        except InputRejected as exc:
            done, bad = [], [_refused(document, exc)]
        embedded += done
        rejected += refusals.add(bad)
    return embedded, rejected, skipped


def _refused(document: Document, exc: InputRejected) -> Rejected:
    return Rejected(document, "InputRejected", clean_message(str(exc)))


def _embed(
    backend: Backend, documents: Sequence[Document], dimensions: int
) -> tuple[list[Embedded], list[Rejected]]:
    """One request; its vectors checked."""
    results = backend.embed(documents)
    if len(results) != len(documents):
        raise BackendUnavailable(
            f"backend returned {len(results)} vectors for {len(documents)} documents"
        )
    good: list[Embedded] = []
    bad_vectors: list[Rejected] = []
    problems = vector_problems([result.vector for result in results], dimensions)
    for result, problem in zip(results, problems, strict=True):
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
    refusals = Refusals()  # the documents rejected so far: their other chunks are not sent

    def embed_part(part: Sequence[Document]) -> tuple[list[Embedded], list[Rejected]] | None:
        if (stop is not None and stop.is_set()) or failed.is_set():
            return None  # stopping: the parts not started yet are released, uncharged
        try:
            result = embed_isolating_poison(backend, part, dimensions, refusals)
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
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # Each part runs in a copy of this context: its log lines keep the run and batch ids.
            futures = [
                (part, pool.submit(contextvars.copy_context().run, embed_part, part))
                for part in parts
            ]
            for part, future in futures:
                _collect(outcome, part, future.result)
    # A chunk not sent because a sibling in a later part was rejected meanwhile: its document's
    # first rejection (the one sync/chunked.py reports) must still be the real one.
    outcome.rejected = refusals.real_first(outcome.rejected)
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
