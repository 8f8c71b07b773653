"""Fixtures for taskloom-history: an empty working directory and the history it gets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from history_helpers import History


@pytest.fixture
def history(in_tmp: Path) -> Iterator[History]:
    yield History(in_tmp / ".taskloom" / "history.db")
