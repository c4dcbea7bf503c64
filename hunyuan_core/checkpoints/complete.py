"""Whether a file holds every tensor a model needs at the right shape, with one message style for every loader.

Checked before anything is allocated, so a damaged or truncated download is named (how many tensors are missing
or misshapen, with an example, and which file to fetch again) instead of failing halfway through a load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from .errors import CheckpointError

T = TypeVar("T")
ShapeOf = Callable[[str], tuple[int, ...]]


def completeness_problem(
    expected: Mapping[str, tuple[int, ...]],
    has: Callable[[str], bool],
    shape: ShapeOf,
    key: Callable[[str], str] = str,
) -> str | None:
    """Which ``expected`` tensors (model name -> shape) a file lacks or holds at another shape, in one clause for
    an error message (``key`` gives a name's spelling in the file); None when the file has them all."""
    missing, wrong = [], []
    for name, want in expected.items():
        if not has(name):
            missing.append(key(name))
        elif tuple(shape(name)) != tuple(want):
            wrong.append(f"{key(name)}: file {tuple(shape(name))}, expected {tuple(want)}")
    detail = []
    if missing:
        detail.append(f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})")
    if wrong:
        detail.append(f"{len(wrong)} with unexpected shapes (e.g. {wrong[0]})")
    return "; ".join(detail) or None


def redownload(files: Sequence[str], folder: str) -> str:
    """The advice closing every refusal of a damaged file: fetch it again, naming the file(s) that fit."""
    return f"Re-download the file ({' or '.join(files)} in models/{folder})"


def require_complete(
    expected: Mapping[str, tuple[int, ...]],
    has: Callable[[str], bool],
    shape: ShapeOf,
    *,
    error: type[CheckpointError],
    file_name: str,
    what: str,
    fix: str,
    key: Callable[[str], str] = str,
) -> None:
    """Raise ``error`` when the file named ``file_name`` (read as ``what``) lacks tensors or holds wrong shapes."""
    problem = completeness_problem(expected, has, shape, key)
    if problem:
        raise error(f"{file_name} is an incomplete or inconsistent {what}: {problem}. {fix}.")


def damaged(error: type[CheckpointError], *, file_name: str, what: str, detail: str, fix: str) -> CheckpointError:
    """The refusal of a file that identifies as ``what`` but whose tensors do not form one."""
    return error(
        f"{file_name} looks like {what} but its tensors do not form one ({detail}); the file is incomplete or "
        f"damaged. {fix}."
    )


def detect_or_damaged(
    detect: Callable[[], T], *, error: type[CheckpointError], file_name: str, what: str, fix: str
) -> T:
    """Run a config detection from shapes; a lookup or arithmetic failure means the tensors do not form ``what``.

    Detection indexes tensors that identification only sampled, so a file can pass as ``what`` and still lack
    them: that is a damaged file, not a program error.
    """
    try:
        return detect()
    except CheckpointError:
        raise
    except (KeyError, IndexError, ValueError) as exc:
        raise damaged(error, file_name=file_name, what=what, detail=str(exc), fix=fix) from None
