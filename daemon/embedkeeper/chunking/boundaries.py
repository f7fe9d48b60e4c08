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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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
    position: int  # a chunk would end here, before the token that starts at this character
    level: int
    unit_start: int  # the unit ending here is text[unit_start:position], the text since the
    # candidate before (its hash decides whether this one is an anchor)


class Tokens(Protocol):
    """A text's tokens as the boundary rule asks about them: how many, where one starts, and
    which one starts at a character (None: none does there)."""

    count: int

    def start_of(self, token: int) -> int: ...

    def starting_at(self, position: int) -> int | None: ...


def _unit_hash(text: str, candidate: Candidate) -> int:
    """CRC-32 of the stripped unit: stable across processes and versions (unlike Python's
    salted `hash()`), in C, and spread well enough for a divisor of 8."""
    unit = text[candidate.unit_start : candidate.position].strip()
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


def candidates(text: str, *, sections: bool = False) -> list[Candidate]:
    """Each candidate cut of the text, in order, by character: after the white space that
    ends a paragraph, sentence or line, so a token starts there. No token is looked up here:
    the rule compares characters with the starts of a few tokens (cut_tokens)."""
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
        if result and result[-1].position == position:
            if level > result[-1].level:
                result[-1] = Candidate(position, level, result[-1].unit_start)
            continue
        result.append(Candidate(position, level, previous))
        previous = position
    return result


def cut_tokens(
    text: str, tokens: Tokens, found: Sequence[Candidate], *, low: int, high: int
) -> list[int]:
    """The token index where each chunk of a text too long for one ends (the last is
    `tokens.count`). A candidate lies `size` tokens after a chunk's start exactly when its
    character lies between the starts of the tokens at that distance, so the scan compares
    characters, and only a chosen cut's token is looked up (a handful a chunk, not every line
    end of a hard-wrapped text)."""
    count = tokens.count
    first = tokens.start_of(0)
    last = tokens.start_of(count - 1)
    usable = [c for c in found if first < c.position <= last]
    ends: list[int] = []
    start = 0
    index = 0
    while start < count:
        if count - start <= high:
            ends.append(count)  # the rest fits: the last chunk
            break
        begin = tokens.start_of(start)
        while index < len(usable) and usable[index].position <= begin:
            index += 1
        start = _next_cut(text, tokens, usable, index, start, low, high)
        ends.append(start)
    return ends


def _next_cut(
    text: str,
    tokens: Tokens,
    found: Sequence[Candidate],
    index: int,
    start: int,
    low: int,
    high: int,
) -> int:
    """Where the chunk starting at token `start` ends; found[index:] lie after its start. Of
    the candidates between `low` and `high` tokens on, those of the highest level decide: the
    first anchor among them, else the one of smallest hash. Only those are hashed."""
    reach = tokens.start_of(start + high)
    least = tokens.start_of(start + low)
    section_least = tokens.start_of(start + low // SECTION_LOW)
    in_reach: list[Candidate] = []
    last_under: Candidate | None = None
    for candidate in found[index:]:
        if candidate.position > reach:
            break
        last_under = candidate
        if candidate.level == SECTION and candidate.position >= section_least:
            cut = _token_of(tokens, candidate, start)
            if cut is not None:
                return cut  # a markdown section starts here
        if candidate.position >= least and candidate.level != SECTION:
            in_reach.append(candidate)
    while in_reach:
        chosen = _chosen(text, in_reach)
        cut = _token_of(tokens, chosen, start)
        if cut is not None:
            return cut
        in_reach.remove(chosen)  # no token starts there (a character the tokenizer drops)
    if last_under is not None:
        cut = _token_of(tokens, last_under, start)
        if cut is not None:
            return cut
    return start + high  # no candidate: a text with no punctuation or line break


def _token_of(tokens: Tokens, candidate: Candidate, start: int) -> int | None:
    """The token a cut at the candidate ends the chunk before; None if no token starts there
    or it would not move past `start`."""
    token = tokens.starting_at(candidate.position)
    return token if token is not None and token > start else None


def _chosen(text: str, in_reach: Sequence[Candidate]) -> Candidate:
    """Of candidates in reach, those of the highest level: the first anchor, else the one of
    smallest hash."""
    top = max(candidate.level for candidate in in_reach)
    best: tuple[int, Candidate] | None = None
    for candidate in in_reach:
        if candidate.level != top:
            continue
        unit_hash = _unit_hash(text, candidate)
        if unit_hash % DIVISORS[top] == 0:
            return candidate  # an anchor
        if best is None or unit_hash < best[0]:
            best = (unit_hash, candidate)
    assert best is not None
    return best[1]


def bounds(low_share: float, high: int) -> int:
    """The low bound for a chunk of at most `high` tokens."""
    return max(1, round(high * low_share))
