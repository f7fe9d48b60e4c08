"""The pure parts of the loop: length-sorted parts, stopping between parts, suspects alone, and
when a pass's sweeps end."""

from __future__ import annotations

import threading

import pytest

from embedkeeper.chunking import make_chunker
from embedkeeper.records import Claimed, Document
from embedkeeper.sync.embedding import embed_claimed, isolate_suspects
from embedkeeper.sync.pipeline import drain
from tests.fakes import ScriptedBackend


def doc(i: int, text: str, suspect: bool = False) -> Document:
    return Document(id=i, text=text, cut=False, content_hash=b"h", suspect=suspect)


class SmallRequests(ScriptedBackend):
    request_size = 2


def test_a_claim_is_cut_into_parts_of_similar_length():
    backend = SmallRequests()
    docs = [doc(1, "x" * 50), doc(2, "x"), doc(3, "x" * 49), doc(4, "xx")]
    outcome = embed_claimed(backend, docs, 384)
    assert backend.calls == [[2, 4], [3, 1]]  # short with short, long with long
    assert sorted(e.document.id for e in outcome.embedded) == [1, 2, 3, 4]


def test_a_stop_between_parts_releases_the_rest_uncharged():
    stop = threading.Event()
    backend = SmallRequests(during=lambda documents: stop.set())
    outcome = embed_claimed(backend, [doc(i, "x" * i) for i in range(1, 7)], 384, stop)
    assert [e.document.id for e in outcome.embedded] == [1, 2]
    assert sorted(d.id for d in outcome.unfinished) == [3, 4, 5, 6]
    assert (outcome.rejected, outcome.error) == ([], None)


def test_suspects_go_alone():
    groups = isolate_suspects([doc(1, "a"), doc(2, "b", suspect=True), doc(3, "c")])
    assert [[d.id for d in g] for g in groups] == [[1, 3], [2]]


class KeySpace:
    """A Store over ids 1..n in memory: `held` ids are a peer's for the first sweep; `poison`
    texts are rejected by the backend. It counts the sweeps (claims from the start)."""

    def __init__(
        self, n: int, held: frozenset[int] = frozenset(), poison_ids: frozenset[int] = frozenset()
    ):
        self.pending = {
            i: doc(i, "poison" if i in poison_ids else f"text {i}") for i in range(1, n + 1)
        }
        self.held = set(held)
        self.failures: dict[int, int] = {}
        self.sweeps = 0

    def claim(self, after, limit):
        if after is None:
            self.sweeps += 1
            if self.sweeps > 1:
                self.held.clear()  # the peer let go after the first sweep
        start = after or 0
        ids = sorted(i for i in self.pending if i > start and self.failures.get(i, 0) < 2)[:limit]
        if not ids:
            return Claimed([], None)
        mine = [self.pending[i] for i in ids if i not in self.held]
        return Claimed(mine, ids[-1], held=len(ids) - len(mine))

    def save(self, embedded):
        for e in embedded:
            self.pending.pop(e.document.id)
        return len(embedded)

    def fail(self, rejected):
        for r in rejected:
            self.failures[r.document.id] = self.failures.get(r.document.id, 0) + 1

    def release(self, documents):
        pass

    def stored_vectors(self, passages):
        return [None] * len(passages)

    def begin(self, documents):
        return 0

    def end(self, token):
        pass


def drained(store: KeySpace):
    return drain(
        store,
        ScriptedBackend(poison="poison"),
        make_chunker("none", window=None, tokenizer=None),
        claim_size=4,
        dimensions=384,
        stop=threading.Event(),
    )


def test_a_sweep_that_leaves_nothing_behind_ends_the_pass():
    store = KeySpace(10)
    stats = drained(store)
    assert (stats.ok, stats.drained, store.sweeps) == (10, True, 1)


def test_a_document_a_peer_held_brings_another_sweep():
    store = KeySpace(10, held=frozenset({3}))
    stats = drained(store)
    assert (stats.ok, stats.drained, store.sweeps) == (10, True, 2)


def test_failures_bring_sweeps_until_they_stop_changing():
    store = KeySpace(6, poison_ids=frozenset({2}))
    stats = drained(store)
    # sweep 1 fails doc 2, sweep 2 fails it again (its last attempt), sweep 3 claims nothing
    assert (stats.ok, stats.failed, stats.drained, store.sweeps) == (5, 2, True, 3)


class WrittenElsewhere(KeySpace):
    """A KeySpace that notes the thread of each write and can fail its `fail_at`-th save."""

    def __init__(self, n: int, fail_at: int = 0, **kwargs) -> None:
        super().__init__(n, **kwargs)
        self.fail_at = fail_at
        self.saves = 0
        self.writing_threads: set[int] = set()
        self.released: list[int] = []
        self.lock = threading.Lock()

    def claim(self, after, limit):
        with self.lock:
            return super().claim(after, limit)

    def save(self, embedded):
        self.writing_threads.add(threading.get_ident())
        self.saves += 1
        if self.saves == self.fail_at:
            raise RuntimeError("the write failed")
        with self.lock:
            return super().save(embedded)

    def release(self, documents):
        self.released += [d.id for d in documents]


def test_batches_are_written_on_another_thread_and_counted_as_they_land():
    behind = WrittenElsewhere(10, poison_ids=frozenset({2}))
    a = drained(behind)
    # Counts as writing in line gave (measured before in-line writing was removed): the poison
    # fails in two sweeps, and a third finds nothing left.
    assert (a.ok, a.failed, a.batches, a.drained) == (9, 2, 4, True)
    assert (behind.sweeps, list(behind.pending.keys())) == (3, [2])
    assert behind.writing_threads
    assert threading.get_ident() not in behind.writing_threads


def test_a_write_that_fails_behind_stops_the_pass_and_lets_the_next_batch_go():
    store = WrittenElsewhere(10, fail_at=1)
    with pytest.raises(RuntimeError, match="the write failed"):
        drained(store)
    assert set(store.pending) == set(range(1, 11))  # nothing was written
    assert set(store.released) == {5, 6, 7, 8}  # the batch embedded while the first was written
