"""The one base class of every checkpoint refusal, so callers can catch all loaders' errors at once."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A file that cannot serve as the model asked for; the message says what it is and what to do instead.

    A ``ValueError`` because the file's content, not the program, is at fault; each loader subclasses it.
    """
