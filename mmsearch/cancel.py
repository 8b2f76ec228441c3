"""A cancellation token an app hands to a long operation and sets from another thread (a Cancel button).

    stop = Cancel()
    worker = threading.Thread(target=idx.index, args=(["~/photos"],), kwargs={"cancel": stop})
    ...
    stop.cancel()     # the run ends at its next batch; what it finished is kept

Anything that takes `cancel=` takes a Cancel, or any callable that returns True once the work should stop.
"""

from __future__ import annotations

import threading

from .errors import MmsearchError


class Cancelled(MmsearchError):
    """A search stopped by its cancellation token (an index run is not an error: its report says it)."""


class Cancel:
    """Set once, from any thread; read (by calling it, or `.cancelled`) by the operation it was given to."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()
