"""A checkpoint file seen under the model's own parameter names, whatever its layout and wrapper prefix."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

import torch

from .files import TensorFile

T = TypeVar("T")


def prefix_before(keys: Iterable[str], anchor: re.Pattern[str]) -> str | None:
    """What comes before an anchor key (``anchor`` captures it as group 1), e.g. ``vae.``; None without one."""
    return next((m[1] for k in keys if (m := anchor.match(k))), None)


def names_under(keys: Iterable[str], prefix: str) -> set[str]:
    """The keys that start with ``prefix``, without it."""
    return {k[len(prefix) :] for k in keys if k.startswith(prefix)}


def _same(value: T) -> T:
    return value


class NamedView:
    """One file's tensors by model name: ``key`` spells a name as the file does (prefix + ``rename``), ``fit``
    turns a stored shape into the model's (e.g. a 5-D conv with T=1 into 4-D), so callers never see the layout."""

    def __init__(
        self,
        file: TensorFile,
        prefix: str = "",
        rename: Callable[[str], str] = _same,
        fit: Callable[[tuple[int, ...]], tuple[int, ...]] = _same,
    ) -> None:
        self.file = file
        self.prefix = prefix
        self.rename = rename
        self.fit = fit

    def key(self, name: str) -> str:
        return self.prefix + self.rename(name)

    def has(self, name: str) -> bool:
        return self.key(name) in self.file

    def shape(self, name: str) -> tuple[int, ...]:
        return self.fit(self.file.shape(self.key(name)))

    def get(self, name: str) -> torch.Tensor:
        tensor = self.file.get(self.key(name))
        shape = self.fit(tuple(tensor.shape))
        return tensor if shape == tuple(tensor.shape) else tensor.reshape(shape)
