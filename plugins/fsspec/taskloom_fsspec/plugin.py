"""Entry point of taskloom-fsspec: a name and a dotted factory, so loading the plugin imports
neither fsspec nor any cloud SDK (they load when a storage is first built)."""

from __future__ import annotations

from taskloom import hookimpl

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_result_storages() -> dict[str, str]:
    return {"fsspec": "taskloom_fsspec:FsspecStorage"}
