"""Poison isolation (issue 24): after a rejected request of several inputs each is sent once
more, alone, so a good input reaches the backend at most twice in an attempt; a chunk whose
document already had a chunk refused is not sent at all, and the real refusal comes first."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

from embedkeeper.errors import InputRejected
from embedkeeper.records import Document, Embedded, Rejected
from embedkeeper.sync.embedding import embed_claimed
from tests.fakes import unit_vector


def doc(doc_id: int, text: str) -> Document:
    return Document(id=doc_id, text=text, cut=False, content_hash=b"h")


class Counting:
    """Refuses a request holding a text with "poison" in it (as a server does, without saying
    which input); counts how often each text was sent."""

    def __init__(self, request_size: int = 32, concurrency: int = 1) -> None:
        self.request_size, self.concurrency = request_size, concurrency
        self.dimensions, self.max_chars = 384, 4096
        self.sent: Counter[str] = Counter()
        self.requests: list[list[str]] = []
        self.lock = threading.Lock()

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        with self.lock:
            self.requests.append([d.text for d in documents])
            self.sent.update(d.text for d in documents)
        self.before(documents)
        if any("poison" in d.text for d in documents):
            raise InputRejected("input length exceeds maximum context length")
        return [Embedded(d, unit_vector(d.text), 3, False) for d in documents]

    def before(self, documents: Sequence[Document]) -> None:
        pass

    def close(self) -> None:
        pass


def accounted(outcome, documents: Sequence[Document]) -> None:
    """Every input is embedded or rejected, once."""
    got = [id(e.document) for e in outcome.embedded] + [id(r.document) for r in outcome.rejected]
    assert sorted(got) == sorted(id(d) for d in documents)
    assert outcome.unfinished == []
    assert outcome.error is None


def test_after_a_rejection_each_good_document_is_sent_once_more_alone():
    docs = [doc(i, f"text {i:02}") for i in range(32)]
    docs[13] = doc(13, "poison 13")
    backend = Counting()

    outcome = embed_claimed(backend, docs, 384)

    accounted(outcome, docs)
    assert sorted(e.document.id for e in outcome.embedded) == [i for i in range(32) if i != 13]
    [rejected] = outcome.rejected
    assert rejected.document is docs[13]
    assert (rejected.error_class, rejected.message) == (
        "InputRejected",
        "input length exceeds maximum context length",
    )
    assert max(backend.sent.values()) == 2  # the rejected request, then once alone
    assert len(backend.requests) == 1 + 32
    assert all(len(r) == 1 for r in backend.requests[1:])


def test_a_chunk_of_a_document_already_refused_is_not_sent():
    # Stand-ins of chunks: several share their document's id. Document 7's second chunk is
    # refused; its third and fourth are useless in this attempt (the document fails anyway).
    chunks = [doc(1, "one a"), doc(7, "seven a"), doc(7, "seven poison"), doc(2, "two a")]
    chunks += [doc(7, "seven c"), doc(2, "two b"), doc(7, "seven d"), doc(3, "three a")]
    backend = Counting(request_size=8)

    outcome = embed_claimed(backend, chunks, 384)

    accounted(outcome, chunks)
    assert [e.document.text for e in outcome.embedded] == [
        "one a", "seven a", "two a", "two b", "three a"
    ]  # fmt: skip
    assert backend.sent["seven c"] == backend.sent["seven d"] == 1  # only in the refused request
    assert max(backend.sent.values()) == 2
    real, *skipped = outcome.rejected
    assert real.document is chunks[2]
    assert real.message == "input length exceeds maximum context length"
    assert [r.document for r in skipped] == [chunks[4], chunks[6]]
    assert all(r.error_class == "InputRejected" for r in skipped)
    assert all(r.message.startswith("not sent: another chunk of its document") for r in skipped)


def test_a_later_part_does_not_send_the_chunks_of_a_document_already_refused():
    chunks = [doc(7, "seven poison"), doc(1, "one aaaaaaaa"), doc(7, "seven bbbbbb")]
    chunks += [doc(2, "two cccccccc")]
    backend = Counting(request_size=2)

    outcome = embed_claimed(backend, chunks, 384)

    accounted(outcome, chunks)
    assert "seven bbbbbb" not in backend.sent
    assert backend.requests[-1] == ["two cccccccc"]  # the later part, less the doomed chunk
    assert [r.document.text for r in outcome.rejected] == ["seven poison", "seven bbbbbb"]


def test_the_real_refusal_comes_before_a_sibling_skipped_in_an_earlier_part():
    # Two parts at once. Part A's request is refused (it holds document 8's poison) and held
    # back until part B has had document 7's chunk refused; A's chunk of 7 is then skipped.
    # Document 7's first rejection must still be the real one (sync/chunked.py reports the
    # first), though A's results are collected before B's.
    b_refused = threading.Event()

    class Racing(Counting):
        def before(self, documents: Sequence[Document]) -> None:
            if [d.text for d in documents] == ["eight poison", "seven aaaaaa"]:
                assert b_refused.wait(10)

        def embed(self, documents: Sequence[Document]) -> list[Embedded]:
            try:
                return super().embed(documents)
            except InputRejected:
                if [d.text for d in documents] == ["seven poison"]:
                    b_refused.set()
                raise

    chunks = [doc(8, "eight poison"), doc(7, "seven aaaaaa"), doc(7, "seven poison")]
    backend = Racing(request_size=2, concurrency=2)

    outcome = embed_claimed(backend, chunks, 384)

    accounted(outcome, chunks)
    assert "seven aaaaaa" not in [t for r in backend.requests[1:] for t in r if len(r) == 1]
    first_of: dict[object, Rejected] = {}
    for rejected in outcome.rejected:
        first_of.setdefault(rejected.document.id, rejected)
    assert first_of[7].document is chunks[2]
    assert first_of[8].document is chunks[0]
    assert outcome.rejected[-1].document is chunks[1]
