"""The entry point of taskloom-pebble: a name and a dotted factory, nothing imported."""

from __future__ import annotations

from taskloom import hookimpl

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_task_runners() -> dict[str, str]:
    return {"pebble": "taskloom_pebble.runner:PebbleTaskRunner"}
