"""Entry point of taskloom-dask: the runner's name and a dotted factory, so loading the plugin
imports neither dask nor distributed (they load when a flow first uses the runner)."""

from __future__ import annotations

from taskloom import hookimpl

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_task_runners() -> dict[str, str]:
    return {"dask": "taskloom_dask:DaskTaskRunner"}
