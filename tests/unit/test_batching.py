"""Pure helpers: vector checks, error text, secret masking, retry delays."""

from __future__ import annotations

import random

import numpy as np
import pytest

from embedkeeper.logs import mask_secrets, mask_url
from embedkeeper.records import clean_message
from embedkeeper.retry import transient_delay_s
from embedkeeper.sync.batching import vector_problem


@pytest.mark.parametrize(
    ("vector", "problem"),
    [
        (np.ones(4, dtype=np.float32), None),
        (np.ones(3, dtype=np.float32), "expected a 4-d vector, got shape (3,)"),
        (np.array([1, np.nan, 0, 0], dtype=np.float32), "vector has NaN or infinite values"),
        (np.array([1, np.inf, 0, 0], dtype=np.float32), "vector has NaN or infinite values"),
        (np.zeros(4, dtype=np.float32), "vector has zero norm"),
    ],
)
def test_vector_problem(vector, problem):
    assert vector_problem(vector, 4) == problem


def test_clean_message_drops_nul_and_bounds_length():
    assert clean_message("bad\x00 input") == "bad input"
    assert len(clean_message("x" * 10_000)) == 500
    assert clean_message("  ") == "no message"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:S3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres:***@/postgres?host=/tmp/x",
        ),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_mask_secrets_in_free_text():
    text = "failed: host=h password=S3cret dbname=x; also postgres://a:S3cret@h/db"
    assert "S3cret" not in mask_secrets(text)


def test_transient_delay_grows_and_is_capped():
    rng = random.Random(1)
    delays = [transient_delay_s(n, 8.0, rng) for n in range(1, 10)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(4.0 <= d <= 8.0 for d in delays[4:])


def test_vectors_checked_together_get_the_verdict_each_gets_alone() -> None:
    from embedkeeper.sync.batching import vector_problems

    good = np.ones(4, dtype=np.float32)
    vectors = [
        good,
        np.array([1.0, np.nan, 0.0, 0.0], dtype=np.float32),
        np.zeros(4, dtype=np.float32),
        np.ones(3, dtype=np.float32),
        np.ones((2, 2), dtype=np.float32),
        np.array([0.0, 0.0, np.inf, 1.0], dtype=np.float32),
        good * -1,
    ]
    expected = [vector_problem(v, 4) for v in vectors]
    assert vector_problems(vectors, 4) == expected
    assert [p is None for p in expected] == [True, False, False, False, False, False, True]
    assert vector_problems([], 4) == []
    assert vector_problems([np.ones(3, dtype=np.float32)], 4) == [expected[3]]
