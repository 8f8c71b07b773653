"""pytest plugin (entry point ``pytest11``): the kit's command-line options, and run history
kept out of the source tree.

Flows run by tests record their history in a file of the session's temporary folder, not in
``.taskloom/history.db`` of the folder pytest runs in (a plugin's checkout, say). Set
``TASKLOOM_HISTORY_PATH`` yourself to choose the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("taskloom")
    group.addoption(
        "--taskloom-runner",
        default=None,
        help="Registered name of the task runner the taskloom conformance suite tests.",
    )
    group.addoption(
        "--taskloom-runner-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="An option for that runner (repeatable), as for 'taskloom run'.",
    )
    group.addoption(
        "--taskloom-shared-dir",
        default=None,
        metavar="PATH",
        help="A folder the runner's workers and this process both read and write, at the same "
        "path (a network filesystem), for the cases that persist results. Default: each "
        "test's tmp_path, right when the workers run on this host.",
    )


@pytest.fixture(scope="session", autouse=True)
def _taskloom_history_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if "TASKLOOM_HISTORY_PATH" in os.environ:
        yield
        return
    with pytest.MonkeyPatch.context() as session_env:
        session_env.setenv("TASKLOOM_HISTORY_PATH", str(tmp_path_factory.mktemp("taskloom-history") / "history.db"))
        yield
