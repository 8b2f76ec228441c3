"""Worker threads for decoding and extracting: Pillow, hashlib, pdfium and the tokenizer release the
GIL for most of their work, so threads scale on cores without pickling pixels between processes."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def ordered_map(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any], window: int,
                cancelled: Callable[[], bool]) -> Iterator[Any]:
    """pool.map with a bounded number in flight, so memory stays flat however many files there are."""
    pending: deque[Future[Any]] = deque()
    it = iter(items)
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            break
    while pending:
        yield pending.popleft().result()
        if cancelled():
            for fut in pending:
                fut.cancel()
            return
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))
