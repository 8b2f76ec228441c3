"""The errors mmsearch raises on purpose. All derive from MmsearchError, so an app that embeds the
library catches one class; the message names the file or value and says what to do."""

from __future__ import annotations


class MmsearchError(Exception):
    """Something the user can fix; the message says what and how."""


class InvalidArgument(MmsearchError, ValueError):
    """A parameter outside its range or not one of its choices (the CLI's usage errors, exit code 2)."""


def first_line(e: BaseException) -> str:
    """An exception's message reduced to its first line (libraries' messages run on for screens)."""
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
