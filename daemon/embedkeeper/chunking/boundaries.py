"""Where a long text is cut: content-defined boundaries on the document's own tokens.

Greedy packing (fill each chunk to the budget from the start of the text) makes every cut
depend on everything before it, so text inserted in paragraph 3 moves every later boundary and
nothing after the edit can keep its vector. Here a cut depends only on the text around it:

1. Candidates are the ends of paragraphs (a blank line, level 3), sentences (`.`, `!` or `?`
   and white space, level 2) and lines (level 1), cut after the white space; with markdown
   also before each heading, before a code fence opens and after it closes (level 4).
2. A candidate is an *anchor* when a stable hash (CRC-32, never Python's salted `hash()`) of
   the unit ending there (the text since the previous candidate, stripped) is 0 modulo its
   level's divisor: every second paragraph end, every fourth sentence end, every eighth line
   end. A markdown section's start is always one.
3. From a chunk's first token, the candidates between `low` and `high` tokens of the highest
   level among them decide (a paragraph end over a sentence end over a line end): the first
   anchor of them ends the chunk, else the one of smallest hash (still the content's choice);
   with no candidate there, the last one under `low`, else `high` tokens on (a text with no
   punctuation). The rest of the text is the last chunk once it fits. A paragraph of between
   `low` and `high` tokens after a cut is therefore a chunk of its own, wherever it moves.

Why it resynchronises: a cut is a function of the candidates and hashes within `high` tokens
after the previous cut. An edit changes its own unit's hash and the token counts after it; the
cuts before it never move, and once a cut after it falls where it fell before (an anchor past
`low` from both starts, which the next anchor usually is), every later cut and passage is the
same as before, so their vectors can be kept. docs/design/edit-cost.md has the measurements.

Everything is computed from one tokenization of the text with offsets: the tokens of a passage
are the document's tokens between its cuts, never counted again.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PARAGRAPH, SENTENCE, LINE, SECTION = 3, 2, 1, 4
# One anchor in DIVISORS[level] candidates of that level, chosen by the unit's hash.
DIVISORS = {PARAGRAPH: 2, SENTENCE: 4, LINE: 8}
_CANDIDATE = re.compile(r"\n[ \t]*\n\s*|[.!?][\"')\]]*\s+|\n\s*")
# Markdown: a heading line, or a code fence line (``` or ~~~), at the start of a line.
_SECTION = re.compile(r"^(?:#{1,6}[ \t]|```|~~~)[^\n]*", re.MULTILINE)
# A chunk's low bound as a share of its high one: 96 of 252 tokens for MiniLM, the setting
# measured in docs/design/edit-cost.md (median chunk 129 tokens).
LOW_SHARE = 0.38
# A markdown section starts a chunk once the one before holds a third of the low bound: a
# heading is a boundary worth a small chunk, but not a chunk of a title alone.
SECTION_LOW = 3


@dataclass(frozen=True, slots=True)
class Candidate:
    token: int  # the chunk would end before this token
    level: int
    unit_start: int  # the unit ending here: text[unit_start:unit_end], the text since the
    unit_end: int  # candidate before (its hash decides whether this one is an anchor)


def _unit_hash(text: str, candidate: Candidate) -> int:
    """CRC-32 of the stripped unit: stable across processes and versions (unlike Python's
    salted `hash()`), in C, and spread well enough for a divisor of 8."""
    unit = text[candidate.unit_start : candidate.unit_end].strip()
    return zlib.crc32(unit.encode("utf-8", "surrogatepass"))


def _section_cuts(text: str) -> list[int]:
    """Markdown's forced cuts, as character positions: before each heading outside a code
    block, before a fence that opens one, after the line of the fence that closes it."""
    cuts: list[int] = []
    in_code = False
    for match in _SECTION.finditer(text):
        line = match.group()
        if line.startswith(("```", "~~~")):
            if in_code:
                end = match.end()
                cuts.append(end + 1 if text.startswith("\n", end) else end)
            else:
                cuts.append(match.start())
            in_code = not in_code
        elif not in_code:
            cuts.append(match.start())
    return cuts


TokenAt = Callable[[int], "int | None"]  # the token that starts at a character, if one does


def candidates(text: str, token_at: TokenAt, *, sections: bool = False) -> list[Candidate]:
    """Each candidate cut of the text, in order, one per token (the highest level there).
    A cut lies after white space, so a token starts there; one that does not (a character the
    tokenizer drops, or the text's end) is no candidate."""
    found: list[tuple[int, int]] = []
    for match in _CANDIDATE.finditer(text):
        mark = match.group()
        level = PARAGRAPH if mark.count("\n") >= 2 else SENTENCE if mark[0] in ".!?" else LINE
        found.append((match.end(), level))
    if sections:
        found += [(position, SECTION) for position in _section_cuts(text)]
        found.sort()
    result: list[Candidate] = []
    previous = 0
    for position, level in found:
        token = token_at(position)
        if not token:  # None, or the first token: no cut
            continue
        if result and result[-1].token == token:
            if level > result[-1].level:
                last = result[-1]
                result[-1] = Candidate(token, level, last.unit_start, last.unit_end)
            continue
        result.append(Candidate(token, level, previous, position))
        previous = position
    return result


def cut_tokens(
    text: str, count: int, found: Sequence[Candidate], *, low: int, high: int
) -> list[int]:
    """The token index where each chunk of a text too long for one ends (the last is
    `count`)."""
    ends: list[int] = []
    start = 0
    index = 0
    while start < count:
        while index < len(found) and found[index].token <= start:
            index += 1
        start = _next_cut(text, count, found, index, start, low, high)
        ends.append(start)
    return ends


def _next_cut(
    text: str,
    count: int,
    found: Sequence[Candidate],
    index: int,
    start: int,
    low: int,
    high: int,
) -> int:
    """Where the chunk starting at token `start` ends; found[index:] lie after `start`. Of the
    candidates between `low` and `high` tokens, those of the highest level decide: the first
    anchor among them, else the one of smallest hash. Only those are hashed."""
    if count - start <= high:
        return count  # the rest fits: the last chunk
    in_reach: list[Candidate] = []
    last_under: int | None = None
    for candidate in found[index:]:
        size = candidate.token - start
        if size > high:
            break
        last_under = candidate.token
        level = candidate.level
        if size < low and not (level == SECTION and size >= low // SECTION_LOW):
            continue
        if level == SECTION:
            return candidate.token  # a markdown section starts here
        in_reach.append(candidate)
    if not in_reach:
        return last_under if last_under is not None else start + high
    return _chosen(text, in_reach)


def _chosen(text: str, in_reach: Sequence[Candidate]) -> int:
    """Of candidates in reach, those of the highest level: the first anchor, else the one of
    smallest hash."""
    top = max(candidate.level for candidate in in_reach)
    best: tuple[int, int] | None = None
    for candidate in in_reach:
        if candidate.level != top:
            continue
        unit_hash = _unit_hash(text, candidate)
        if unit_hash % DIVISORS[top] == 0:
            return candidate.token  # an anchor
        if best is None or unit_hash < best[0]:
            best = (unit_hash, candidate.token)
    assert best is not None
    return best[1]


def bounds(low_share: float, high: int) -> int:
    """The low bound for a chunk of at most `high` tokens."""
    return max(1, round(high * low_share))
