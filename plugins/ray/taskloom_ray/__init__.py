"""taskloom-ray: the ``ray`` task runner.

``RayTaskRunner()`` runs a flow's task runs on a private local Ray, ``RayTaskRunner(address=...)``
on a running cluster; `remote_options` sets Ray options for the tasks submitted in a block.

Nothing here imports ray until a flow run enters the runner, and the names below are loaded on
first use, so that registering the plugin (which imports this package) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "RayConnectionError": "._connect",
    "RayNotInstalledError": "._connect",
    "RayTaskRunner": ".runner",
    "RayWorkerError": "._handles",
    "remote_options": ".options",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'taskloom_ray' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
