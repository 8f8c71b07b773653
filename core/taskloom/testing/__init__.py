"""The conformance kits: one test class per kind of plugin, run by the plugin against itself.

In a plugin's test suite::

    from taskloom.testing import RunnerConformance

    class TestMyRunner(RunnerConformance):
        runner = "my-runner"          # a registered name, an instance, or a factory

or, without a file::

    pytest --pyargs taskloom.testing --taskloom-runner my-runner

A runner that is costly to start can override the ``taskloom_runner`` fixture instead, to
hand the suite a runner connected to a cluster started once per session.

A result storage subclasses `StorageConformance` (``storage = "my-store"``), a log sink
`SinkConformance` (``sink = "my-sink"`` and a ``read_output`` method).

The kits are versioned with `CONFORMANCE_VERSION`: a new case in a minor release of
taskloom-core is a behaviour every runner must have.
"""

from __future__ import annotations

from .conformance import CONFORMANCE_VERSION, RunnerConformance
from .sink import SinkConformance
from .storage import StorageConformance

__all__ = ["CONFORMANCE_VERSION", "RunnerConformance", "SinkConformance", "StorageConformance"]
