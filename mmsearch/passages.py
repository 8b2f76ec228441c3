"""Keyword passages: the units the full-text index holds, chosen for people searching, not for the model.

The text tower sees chunks as long as its context (32 to 77 tokens); a person searching types phrases
of any length, which the chunks would cut. So the keyword index holds passages instead: each page's
text cut into runs of PASSAGE_WORDS words, a new one every STEP_WORDS words, so consecutive passages
share OVERLAP_WORDS words and any phrase of up to OVERLAP_WORDS + 1 words lies whole inside one of
them. A word is a run of non-space characters (at most MAX_WORD_CHARS: a longer run counts as several),
and each Chinese, Japanese or Korean character on its own, so a run written without spaces is found
across any boundary. Passages never cross pages; a text file's segments are one page.

Passages are cut from the page text as the document's stored chunks hold it (rebuild_pages): the
chunks are spans of the page that together cover every character but whitespace, so the text between
them is whitespace, and it is put back as spaces at the same offsets. The same function serves a new
document and an index built before passages existed (its catalog migration), with no file read again.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .keyword import CJK_RANGES

PASSAGE_WORDS = 200
STEP_WORDS = 144
OVERLAP_WORDS = PASSAGE_WORDS - STEP_WORDS  # a phrase of up to 57 words is never cut
MAX_WORD_CHARS = 64


# A word: one CJK character (keyword.CJK_RANGES: the index takes each as a word of its own), or a run
# of other non-space characters.
@functools.cache
def _word() -> re.Pattern[str]:
    return re.compile(f"[{CJK_RANGES}]|[^\\s{CJK_RANGES}]{{1,{MAX_WORD_CHARS}}}")


@dataclass(frozen=True)
class Passage:
    page: int | None
    start: int  # character span in the page's text, as the chunks count it (Chunk.start)
    end: int
    text: str


Span = tuple[int | None, int, int, str]  # (page, start, end, text) of a stored chunk


def rebuild_pages(chunks: Iterable[Span]) -> Iterator[tuple[int | None, int, str]]:
    """(page, offset, text) from chunk spans sorted by (page, start): overlaps taken once, the
    whitespace between chunks put back as spaces (offsets in the text are the chunks' offsets)."""
    page: int | None = None
    parts: list[str] = []
    first = end = -1
    for number, start, stop, text in chunks:
        if parts and number != page:
            yield page, first, "".join(parts)
            parts = []
        if not parts:
            page, first, end = number, start, start
        if start > end:
            parts.append(" " * (start - end))
            end = start
        if stop > end:
            parts.append(text[end - start :])
            end = stop
    if parts:
        yield page, first, "".join(parts)


def cut(page: int | None, offset: int, text: str) -> Iterator[Passage]:
    """A page's text (starting at `offset`) as passages, from its first word on."""
    spans = [(m.start(), m.end()) for m in _word().finditer(text)]
    n = len(spans)
    i = 0
    while i < n:
        j = min(i + PASSAGE_WORDS, n)
        a, b = spans[i][0], spans[j - 1][1]
        yield Passage(page, offset + a, offset + b, text[a:b])
        if j == n:
            return
        i += STEP_WORDS


def from_chunks(chunks: Iterable[Span]) -> list[Passage]:
    """Every passage of the pages these chunk spans (sorted by page, start) cover."""
    return [p for page, offset, text in rebuild_pages(chunks) for p in cut(page, offset, text)]
