"""The kinds of test (pytest marks registered in pyproject.toml): every test carries exactly one.

tests/conftest.py installs the hook below, so a test module that forgets its ``pytestmark`` (or carries two kinds)
fails the collection instead of silently escaping ``-m unit`` and the other selections.
"""

from __future__ import annotations

import pytest

KINDS = ("unit", "parity", "server", "bench", "browser")


def kinds_of(item: pytest.Item) -> list[str]:
    """The kind marks on ``item`` (from its module, class or itself), each named once."""
    return sorted({mark.name for mark in item.iter_markers() if mark.name in KINDS})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything, so an unmarked test cannot hide behind it
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = {}
    for item in items:
        kinds = kinds_of(item)
        if len(kinds) != 1:
            wrong.setdefault(item.nodeid.split("::")[0], f"{', '.join(kinds) or 'no kind'} on {item.name}")
    if wrong:
        lines = "\n".join(f"  {where}: {what}" for where, what in sorted(wrong.items()))
        raise pytest.UsageError(
            f"every test needs exactly one of the marks {', '.join(KINDS)} (module level: "
            f"`pytestmark = pytest.mark.<kind>`), see pyproject.toml:\n{lines}"
        )
