"""The one base class of every checkpoint refusal, so callers can catch all loaders' errors at once."""

from __future__ import annotations

SHOWN_MODULE = "HunyuanImage21"  # what error dialogs print before the class name, instead of the install path


class CheckpointError(ValueError):
    """A file that cannot serve as the model asked for; the message says what it is and what to do instead.

    A ``ValueError`` because the file's content, not the program, is at fault; each loader subclasses it. Hosts
    show an error's type as ``<module>.<class>``, and a custom node's module name is its folder's full path, so
    every subclass reports ``SHOWN_MODULE`` as its module.
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.__module__ = SHOWN_MODULE


CheckpointError.__module__ = SHOWN_MODULE
