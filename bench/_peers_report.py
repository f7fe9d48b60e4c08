"""The tables bench/peers.py prints: figures are medians over rounds, ratios medians of the
per-round ratios (each round runs every system back to back)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"model": 1.0, "noop": 100.0, "catch_up": 50.0, "ollama": 2.0}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio(ours: list[float], theirs: list[float], *, faster_is_more: bool) -> float:
    pairs = zip(ours, theirs, strict=True)
    return _median([o / t if faster_is_more else t / o for o, t in pairs])


def _verdict(ratio: float, target: float) -> str:
    return f"target >= {target:g}: {'met' if ratio >= target else 'MISSED'}"


def report(out: dict[str, Any]) -> None:
    if "model" in out:
        _model(out["model"], out["pairs"])
    if "null" in out:
        _null(out["null"], out["pairs"])
    if "ollama" in out:
        _ollama(out["ollama"], out["pairs"])


def _model(part: dict[str, Any], pairs: int) -> None:
    rates = part["rates"]
    print(
        f"\npeers, model-bound: MiniLM on CPU, {part['docs']} pydoc_data paragraphs, {pairs} rounds"
    )
    print(f"  {'system':12} {'docs/s':>8}  {'peak RSS':>9}  {'embedkeeper x':>13}  runs")
    for system, values in rates.items():
        rss = _median([r["rss_mb"] for r in part["legs"][system]["runs"]])
        ratio = _ratio(rates["embedkeeper"], values, faster_is_more=True)
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {system:12} {_median(values):8.1f}  {rss:7.0f}MB  {ratio:13.3f}  {runs}")
    for peer in ("seed loop", "langchain"):
        ratio = _ratio(rates["embedkeeper"], rates[peer], faster_is_more=True)
        print(f"  embedkeeper / {peer}: {ratio:.3f} ({_verdict(ratio, TARGETS['model'])})")
    print(f"  vectors vs embedkeeper's after the backfill: {part['backfill_cosine']}")
    print("  catch-up after the change set (one pass each, last round's copies):")
    for system, row in part["catch_up"].items():
        if system != "cosine":
            print(
                f"    {system:12} {row['sync_s']:6.2f} s  edits {row['edits']:>7}"
                f"  inserts {row['inserts']:>7}  deletes {row['deletes']:>5}"
                f"  vectors {row['vectors']}/{row['documents']} docs,"
                f" {row['not_current']} without a current vector"
            )
    print(f"  vectors vs embedkeeper's after the catch-up: {part['catch_up']['cosine']}")


def _null(part: dict[str, Any], pairs: int) -> None:
    noop, catch = part["noop_s"], part["catch_up_s"]
    print(
        f"\npeers, null backend vs DeterministicFakeEmbedding: {part['docs']} documents, "
        f"{pairs} rounds"
    )
    init = part["initial_sync"]
    print(
        f"  initial sync: embedkeeper {init['embedkeeper']['sync_s']:.1f} s, "
        f"langchain {init['langchain']['sync_s']:.1f} s"
    )
    print(f"  {'':24} {'system':24} {'seconds':>8}  {'langchain/it':>12}  peak RSS")
    for label, key, values in (
        ("pass that finds nothing", "noop", noop),
        ("catch-up", "catch_up", catch),
    ):
        for system, times in values.items():
            ratio = _ratio(times, values["langchain"], faster_is_more=False)
            verdict = "" if system == "langchain" else f"({_verdict(ratio, TARGETS[key])})"
            rss = _median(part["rss_mb"][system]) if key == "catch_up" else float("nan")
            print(
                f"  {label:24} {system:24} {_median(times):8.3f}  {ratio:12.1f}  {rss:5.0f} MB"
                f"  {verdict}"
            )
    for system, times in part["embedkeeper_cli_noop_s"].items():
        print(f"  CLI wall time of the no-op, start-up included, {system}: {_median(times):.2f} s")
    for system, row in part["picked"].items():
        print(
            f"  {system:24} edits {row['edits']}, inserts {row['inserts']}, deletes "
            f"{row['deletes']}, vectors {row['vectors']}/{row['documents']} docs, "
            f"{row['not_current']} without a current vector"
        )


def _ollama(part: dict[str, Any], pairs: int) -> None:
    rates = part["rates"]
    ratio = _ratio(rates["embedkeeper"], rates["seed loop"], faster_is_more=True)
    print(f"\npeers, Ollama-protocol stand-in (MiniLM), {part['docs']} documents, {pairs} rounds")
    for system, values in rates.items():
        rss = _median(part["rss_mb"][system])
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {system:12} {_median(values):8.1f} docs/s  {rss:5.0f} MB  {runs}")
    print(f"  embedkeeper / seed loop: {ratio:.2f} ({_verdict(ratio, TARGETS['ollama'])})")
    print(f"  vectors vs embedkeeper's: {part['cosine']}")
