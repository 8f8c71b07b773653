"""taskloom-ray: the ``ray`` task runner.

``RayTaskRunner()`` runs a flow's task runs on a private local Ray, ``RayTaskRunner(address=...)``
on a running cluster; `remote_options` sets Ray options for the tasks submitted in a block.
Importing this package does not import ray: the runner imports it when a flow run starts.
"""

from __future__ import annotations

from ._connect import RayConnectionError, RayNotInstalledError
from ._handles import RayWorkerError
from .options import remote_options
from .runner import RayTaskRunner

__version__ = "0.1.0"

__all__ = [
    "RayConnectionError",
    "RayNotInstalledError",
    "RayTaskRunner",
    "RayWorkerError",
    "remote_options",
]
