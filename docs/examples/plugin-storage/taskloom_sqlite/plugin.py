"""The entry point of taskloom-sqlite: the storage's name and where its class lives."""

from __future__ import annotations

from taskloom import hookimpl

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_result_storages() -> dict[str, str]:
    return {"sqlite": "taskloom_sqlite.storage:SQLiteStorage"}
