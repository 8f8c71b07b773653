"""Entry point of taskloom-ray: a name and a dotted factory, so loading it does not import ray."""

from __future__ import annotations

from taskloom import hookimpl

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_task_runners() -> dict[str, str]:
    return {"ray": "taskloom_ray:RayTaskRunner"}
