"""The conformance kit: one test class that any task runner plugin runs against itself.

In a plugin's test suite::

    from taskloom.testing import RunnerConformance

    class TestMyRunner(RunnerConformance):
        runner = "my-runner"          # a registered name, an instance, or a factory

or, without a file::

    pytest --pyargs taskloom.testing --taskloom-runner my-runner

A runner that is costly to start can override the ``taskloom_runner`` fixture instead, to
hand the suite a runner connected to a cluster started once per session.

The kit is versioned with `CONFORMANCE_VERSION`: a new case in a minor release of
taskloom-core is a behaviour every runner must have.
"""

from __future__ import annotations

from .conformance import CONFORMANCE_VERSION, RunnerConformance

__all__ = ["CONFORMANCE_VERSION", "RunnerConformance"]
