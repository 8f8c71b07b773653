"""Entry point of taskloom-local: names and factories only, so loading it imports nothing."""

from __future__ import annotations

from taskloom import hookimpl

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_task_runners() -> dict[str, str]:
    return {
        "sequential": "taskloom_local:SequentialTaskRunner",
        "concurrent": "taskloom_local:ConcurrentTaskRunner",
        "threads": "taskloom_local:ThreadPoolTaskRunner",
        "processes": "taskloom_local.processes:ProcessTaskRunner",
    }


@hookimpl
def taskloom_register_result_storages() -> dict[str, str]:
    return {
        "memory": "taskloom_local:MemoryStorage",
        "local-file": "taskloom_local:LocalFileStorage",
    }


@hookimpl
def taskloom_register_serializers() -> dict[str, str]:
    return {
        "pickle": "taskloom_local:PickleSerializer",
        "json": "taskloom_local:JSONSerializer",
        "cloudpickle": "taskloom_local.storage:CloudpickleSerializer",
    }
