"""The vector settings a pair is bound to, read off the config: what they hold, what leaves
them alone, and how a change is said."""

from __future__ import annotations

from embedkeeper.chunking.for_model import vector_settings, vectors_key
from embedkeeper.cli import build_parser
from embedkeeper.config import ModelConfig
from embedkeeper.store.pair.vector_settings import changes, settings_of


def test_the_settings_name_what_changes_a_vector_and_leave_out_where_it_is_made():
    base = ModelConfig(name="m")
    assert set(vector_settings(base)) == {
        "backend", "model", "prefix", "normalize", "max_tokens", "dimensions", "options"
    }  # fmt: skip
    moved = ModelConfig(name="m", device="cpu", batch_size=3)
    assert settings_of(moved) == settings_of(base)
    assert vectors_key(moved) == vectors_key(base)
    prefixed = ModelConfig(name="m", prefix="query: ")
    assert vectors_key(prefixed) != vectors_key(base)


def test_a_change_is_said_setting_by_setting_old_to_new():
    old = settings_of(ModelConfig(name="m"))
    new = settings_of(ModelConfig(name="m", prefix="q: ", normalize=False))
    assert changes(old, new) == ["normalize True -> False", "prefix '' -> 'q: '"]
    assert changes(old, old) == []


def test_migrate_takes_reembed_once_per_pair():
    args = build_parser().parse_args(
        ["migrate", "--reembed", "docs", "minilm", "--reembed", "notes", "minilm"]
    )
    assert args.reembed == [["docs", "minilm"], ["notes", "minilm"]]
    assert build_parser().parse_args(["migrate"]).reembed is None
