"""A pytest plugin that lets mutmut 3.7 run on pytest 9.2 (loaded only by ``make mutation``).

pytest 9.2 dropped the private ``Node._nodeid`` (pytest-dev/pytest#14758); mutmut 3.7 reads it
when it maps each test to the functions it runs. mutmut 3.8 does not need this, but it needs a
click that faust-streaming refuses, so until then every collected item gets the old name back.
"""

from __future__ import annotations

import pytest


def pytest_itemcollected(item: pytest.Item) -> None:
    """Give each test item the private attribute mutmut 3.7 reads (``item.nodeid`` under its old
    name); a no-op where pytest still has it."""
    if "_nodeid" not in vars(item) and not hasattr(type(item), "_nodeid"):
        item._nodeid = item.nodeid  # type: ignore[attr-defined]
