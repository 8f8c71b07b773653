"""pytest plugin (entry point ``pytest11``): the ``--taskloom-runner`` option of the kit."""

from __future__ import annotations

from typing import Any


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
