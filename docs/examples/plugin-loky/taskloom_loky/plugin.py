"""The entry point of taskloom-loky: names and factories only, so loading it imports nothing.

taskloom imports this module in every process that looks a runner up by name; the dotted
string below is imported only when a flow actually uses the ``loky`` runner.
"""

from __future__ import annotations

from taskloom import hookimpl

#: The major version of taskloom's hook API this plugin was written for.
TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_task_runners() -> dict[str, str]:
    return {"loky": "taskloom_loky.runner:LokyTaskRunner"}
