"""Shared fixtures: a clean plugin registry and settings for tests that change them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskloom import plugins
from taskloom.logging import reset_logging

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


@pytest.fixture(scope="session", autouse=True)
def _history_out_of_the_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Flows run by tests record their history in a scratch file, not in the checkout."""
    with pytest.MonkeyPatch.context() as session_env:
        session_env.setenv("TASKLOOM_HISTORY_PATH", str(tmp_path_factory.mktemp("history") / "history.db"))
        yield


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """Reload entry points before and after the test (for tests that install or disable)."""
    plugins.reset()
    reset_logging()
    yield
    plugins.reset()
    reset_logging()


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in an empty directory with no TASKLOOM_* variables set."""
    monkeypatch.chdir(tmp_path)
    import os

    for var in list(os.environ):
        if var.startswith("TASKLOOM_"):
            monkeypatch.delenv(var)
    return tmp_path


class RecordHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def run_logs() -> Iterator[RecordHandler]:
    """Every record that reaches the ``taskloom`` logger in the flow's process."""
    handler = RecordHandler()
    logger = logging.getLogger("taskloom")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
