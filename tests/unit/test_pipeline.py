"""The pure parts of the loop: length-sorted parts, stopping between parts, suspects alone."""

from __future__ import annotations

import threading

from daemon.documents import Document
from daemon.pipeline import embed_claimed, isolate_suspects
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
