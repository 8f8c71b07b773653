"""Collected by ``pytest --pyargs taskloom.testing --taskloom-runner NAME``."""

from __future__ import annotations

from taskloom.testing import RunnerConformance


class TestRunnerConformance(RunnerConformance):
    """The runner named by ``--taskloom-runner``."""
