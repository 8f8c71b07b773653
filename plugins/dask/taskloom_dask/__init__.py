"""taskloom-dask: run taskloom task runs on Dask, on a temporary local cluster or a real one.

    from taskloom import flow
    from taskloom_dask import DaskTaskRunner

    @flow(task_runner=DaskTaskRunner())                          # a temporary LocalCluster
    @flow(task_runner=DaskTaskRunner(address="tcp://10.0.0.5:8786"))   # an existing cluster

Importing this package does not import dask or distributed: the runner imports them when a
flow enters it, so a flow on another runner never pays for them.
"""

from __future__ import annotations

from .client import get_dask_client
from .runner import DaskTaskRunner

__version__ = "0.1.0"

__all__ = ["DaskTaskRunner", "get_dask_client"]
