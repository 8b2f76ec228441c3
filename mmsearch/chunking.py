"""Text cut into chunks that fit the text tower's context.

Chunks are character spans of one page's text, cut on token boundaries of the model's own tokenizer,
preferably at a paragraph break, a sentence end or a space, and overlapping by a few tokens so a phrase
cut in two is still whole in one of them. Chunks come out as they are cut (iter_chunks), so a document
of any size is chunked in flat memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Protocol

import numpy as np

from .textfiles import Page

_PIECE_CHARS = 4096  # text per encode call; pieces end at a newline or space, so tokens never straddle two
_BATCH_CHARS = 1 << 18  # text per encode_batch: enough for its threads, little enough to keep memory flat

@dataclass(frozen=True)
class Chunk:
    page: int | None
    start: int  # character span: page.text[start - page.offset : end - page.offset] == text
    end: int
    text: str


class Encoding(Protocol):
    offsets: list[tuple[int, int]]

    def __len__(self) -> int: ...


class TokenizerLike(Protocol):
    """What chunking needs of a `tokenizers.Tokenizer`."""

    def encode(self, sequence: str, *, add_special_tokens: bool = ...) -> Encoding: ...

    def encode_batch(self, input: list[str], *, add_special_tokens: bool = ...) -> list[Encoding]: ...


def chunk_pages(pages: Iterable[Page], tokenizer: TokenizerLike, *, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """Cut pages into chunks of at most `max_tokens` tokens (as `tokenizer` encodes the chunk's text on
    its own, without special tokens), consecutive chunks sharing about `overlap_tokens` tokens.

    max_tokens is the text tower's context less its special tokens (77 - 2 for CLIP). Chunks never cross
    pages; pages with only whitespace give none.
    """
    return list(iter_chunks(pages, tokenizer, max_tokens=max_tokens, overlap_tokens=overlap_tokens))


def iter_chunks(pages: Iterable[Page], tokenizer: TokenizerLike, *, max_tokens: int,
                overlap_tokens: int) -> Iterator[Chunk]:
    """chunk_pages, lazily: pages are read and cut as the chunks are taken (at most about _BATCH_CHARS
    of text is tokenized ahead), so a caller that stops taking them stops the work."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(f"overlap_tokens must be in [0, max_tokens), got {overlap_tokens}")
    if getattr(tokenizer, "truncation", None) or getattr(tokenizer, "padding", None):
        # A truncating tokenizer hides all but the first tokens of every piece: most of the text would
        # never reach a chunk. encoder.chunk_tokenizer gives the right one.
        raise ValueError("chunking needs a tokenizer that neither truncates nor pads")
    return _iter_chunks(pages, tokenizer, max_tokens, overlap_tokens)


def _iter_chunks(pages: Iterable[Page], tokenizer: TokenizerLike, max_tokens: int, overlap: int) -> Iterator[Chunk]:
    for page in pages:
        if page.text.strip():
            yield from _Chunker(page, tokenizer, max_tokens, overlap).run()


# Boundary kinds before a token, weakest to strongest: where a chunk may end.
_INSIDE, _WORD, _SENTENCE, _PARAGRAPH = 0, 1, 2, 3
_CUT_PREFERENCE = [bytes([k]) for k in (_PARAGRAPH, _SENTENCE, _WORD)]
_TABLE_SIZE = 0x10000  # lookup tables cover the Basic Multilingual Plane; no space or stop lies beyond it
_SPACE = np.zeros(_TABLE_SIZE, dtype=bool)  # str.isspace, which is what re's \s matches (1 ms, not 13 by a loop)
_SPACE[[m.start() for m in re.finditer(r"\s", "".join(map(chr, range(_TABLE_SIZE))))]] = True
_STOP = np.zeros(_TABLE_SIZE, dtype=bool)
_STOP[[ord(c) for c in ".!?…\u3002\uff01\uff1f"]] = True  # with 。！？, which need no space after them
_CLOSER = np.zeros(_TABLE_SIZE, dtype=bool)
_CLOSER[[ord(c) for c in "\"')]}»’”」』"]] = True
_STOP_NO_SPACE = np.zeros(_TABLE_SIZE, dtype=bool)
_STOP_NO_SPACE[[ord(c) for c in "\u3002\uff01\uff1f"]] = True


def _lookup(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return table[np.minimum(codes, _TABLE_SIZE - 1)] & (codes < _TABLE_SIZE)


class _Chunker:
    """Windows over one page's token stream, fed a batch of pieces at a time so memory stays flat.

    Pending tokens are numpy arrays: start/end offsets in the page, `kind` of the boundary before each
    token, `hard` where a piece was cut without whitespace, `spaced` where the token itself begins with
    whitespace (byte-level tokenizers), since cuts there may not re-encode to the same tokens.
    """

    def __init__(self, page: Page, tokenizer: TokenizerLike, max_tokens: int, overlap: int):
        self.page, self.text, self.tokenizer = page, page.text, tokenizer
        self.max_tokens, self.overlap = max_tokens, overlap
        empty = np.zeros(0, dtype=np.int64)
        self.starts, self.ends, self.kind = empty, empty, empty
        self.hard = self.spaced = np.zeros(0, dtype=bool)
        self.first = 0  # start of the next window in the pending arrays
        self.chunks: list[Chunk] = []  # cut, not yet taken
        self.last = (0, -1)  # the span of the last chunk cut

    def run(self) -> Iterator[Chunk]:
        batch: list[tuple[int, int, bool]] = []
        size = 0
        for piece in _pieces(self.text):
            batch.append(piece)
            size += piece[1] - piece[0]
            if size >= _BATCH_CHARS:
                self._feed(batch)
                yield from self._take()
                batch, size = [], 0
        if batch:
            self._feed(batch)
        self._emit(final=True)
        yield from self._take()

    def _take(self) -> list[Chunk]:
        done, self.chunks = self.chunks, []
        return done

    def _feed(self, batch: list[tuple[int, int, bool]]) -> None:
        encodings = self.tokenizer.encode_batch([self.text[a:b] for a, b, _ in batch], add_special_tokens=False)
        starts, ends, hard = [], [], []
        for (a, _, clean), encoding in zip(batch, encodings):
            pairs = encoding.offsets
            offsets = np.fromiter(chain.from_iterable(pairs), dtype=np.int64, count=2 * len(pairs)).reshape(-1, 2)
            if len(offsets):
                starts.append(offsets[:, 0] + a)
                ends.append(offsets[:, 1] + a)
                cut = np.zeros(len(offsets), dtype=bool)
                cut[0] = not clean
                hard.append(cut)
        if not starts:
            return
        # Offsets in order (a few normalisers emit (0, 0) for inserted characters).
        floor = int(self.ends[-1]) if len(self.ends) else 0
        new_starts = np.maximum.accumulate(np.maximum(np.concatenate(starts), floor))
        new_ends = np.maximum(np.maximum.accumulate(np.concatenate(ends)), new_starts)
        kind, spaced = self._boundaries(new_starts, new_ends, batch[-1][1])
        if not len(self.starts):
            kind[0] = _PARAGRAPH  # the page start
        self.starts = np.concatenate([self.starts[self.first :], new_starts])
        self.ends = np.concatenate([self.ends[self.first :], new_ends])
        self.kind = np.concatenate([self.kind[self.first :], kind])
        self.hard = np.concatenate([self.hard[self.first :], np.concatenate(hard)])
        self.spaced = np.concatenate([self.spaced[self.first :], spaced])
        self.first = 0
        self._emit(final=False)

    def _boundaries(self, starts: np.ndarray, ends: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The kind of boundary before each new token, and whether it begins with whitespace."""
        previous_end = int(self.ends[-1]) if len(self.ends) else int(starts[0])
        base = max(0, min(previous_end, int(starts[0])) - 2)  # two characters back, to see a sentence end
        codes = np.frombuffer(self.text[base:limit].encode("utf-32-le"), dtype="<u4").astype(np.int64)
        n = len(codes)
        if not n:  # only zero-width tokens at the very end: nothing to cut between
            return np.zeros(len(starts), dtype=np.int64), np.zeros(len(starts), dtype=bool)
        space = _lookup(_SPACE, codes)
        solid = np.flatnonzero(~space)
        # The gap before a token runs from the previous token's end to the first non-space at or after its
        # start (byte-level tokens carry their leading space with them).
        at = np.searchsorted(solid, starts - base)
        gap_end = np.where(at < len(solid), solid[np.minimum(at, len(solid) - 1)], n)
        gap_start = np.minimum(np.concatenate([[previous_end], ends[:-1]]) - base, gap_end)
        newlines = np.concatenate([[0], np.cumsum(codes == 10)])
        breaks = newlines[gap_end] - newlines[gap_start]
        last = codes[np.maximum(gap_start - 1, 0)]
        before_last = codes[np.maximum(gap_start - 2, 0)]
        stop = (_lookup(_STOP, last) | (_lookup(_CLOSER, last) & _lookup(_STOP, before_last))) & (gap_start > 0)
        kind = np.where(gap_end > gap_start, _WORD, _INSIDE)
        kind[(kind == _WORD) & stop] = _SENTENCE
        kind[_lookup(_STOP_NO_SPACE, last) & (gap_start > 0)] = _SENTENCE
        kind[breaks >= 2] = _PARAGRAPH
        spaced = space[np.minimum(starts - base, n - 1)] & (starts - base < n)
        return kind, spaced

    def _emit(self, *, final: bool) -> None:
        # Windows are sequential (each starts from the last cut), so this loop is Python; it scans bytes
        # and lists rather than slicing numpy arrays, which costs more per window than the scan itself.
        self._kinds = self.kind.astype(np.uint8).tobytes()
        self._words = (self.kind >= _WORD).astype(np.uint8).tobytes()
        self._hard = self.hard.astype(np.uint8).tobytes()
        self._spaced = self.spaced.astype(np.uint8).tobytes()
        self._starts, self._ends = self.starts.tolist(), self.ends.tolist()
        i, n, m = self.first, len(self._starts), self.max_tokens
        while n - i > m or (final and i < n):
            if n - i <= m:
                j = n  # the page's last window
            else:
                # Cut at the strongest boundary in the window's second half, the latest of those.
                lo, hi = i + max(1, m // 2), i + m
                for kind in _CUT_PREFERENCE:
                    j = self._kinds.rfind(kind, lo, hi + 1)
                    if j >= 0:
                        break
                else:
                    j = hi
            j = self._fit(i, j, last=final and j == n)
            self._add(i, j)
            if j >= n:
                i = n
                break
            # Overlap: step back, then forward to the first word start, so a chunk doesn't open mid-word.
            step = max(j - self.overlap, i + 1)
            word = self._words.find(b"\x01", step, j + 1)
            i = word if word >= 0 else step
        self.first = i

    def _fit(self, i: int, j: int, *, last: bool) -> int:
        """Shrink [i, j) until its text alone encodes to at most max_tokens, where that might not hold:
        cut inside a word, across a hard piece boundary, or with space-carrying tokens (byte-level BPE),
        since those can encode differently once cut out. Cuts between words re-encode to the same tokens."""
        while j - i > 1:
            risky = (
                self._kinds[i] == _INSIDE
                or (not last and j < len(self._kinds) and self._kinds[j] == _INSIDE)
                or self._hard.find(b"\x01", i + 1, j) >= 0
                or self._spaced.find(b"\x01", i, j) >= 0
            )
            if not risky:
                return j
            a, b = self._span(i, j)
            count = len(self.tokenizer.encode(self.text[a:b], add_special_tokens=False))
            if count <= self.max_tokens:
                return j
            j = max(i + 1, j - max(1, count - self.max_tokens))
            last = False
        return j  # one token: can't cut finer (only a tiny max_tokens gets here with it still too long)

    def _span(self, i: int, j: int) -> tuple[int, int]:
        """The characters of tokens i..j-1, without whitespace at either end."""
        a, b = self._starts[i], self._ends[j - 1]
        text = self.text
        if a < b and not text[a].isspace() and not text[b - 1].isspace():
            return a, b  # (most spans: tokens that carry no space; slicing to strip costs a chunk ~1 us)
        piece = text[a:b]
        return a + len(piece) - len(piece.lstrip()), b - len(piece) + len(piece.rstrip())

    def _add(self, i: int, j: int) -> None:
        a, b = self._span(i, j)
        if b <= a:
            return
        if self.last[0] <= a and b <= self.last[1]:
            return  # nothing new: tokens that share one character (byte-level pieces of it) map to one span
        self.last = (a, b)
        offset = self.page.offset
        self.chunks.append(Chunk(self.page.number, offset + a, offset + b, self.text[a:b]))


def _pieces(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, clean) pieces of about _PIECE_CHARS, ending after a newline, else after a space;
    `clean` is False where neither was found and the piece was cut mid-run."""
    start, n = 0, len(text)
    while start < n:
        limit = start + _PIECE_CHARS
        if limit >= n:
            yield start, n, True
            return
        floor = start + _PIECE_CHARS // 2
        cut = text.rfind("\n", floor, limit)
        if cut < 0:
            cut = text.rfind(" ", floor, limit)
        if cut < 0:
            yield start, limit, False
            start = limit
        else:
            yield start, cut + 1, True
            start = cut + 1
