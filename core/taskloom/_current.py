"""The context variables of the current runs, and the two calls up the core's layers.

Kept apart, at the bottom of the layers, so that `import taskloom` stays light.

Every import in the core points down its layers (see "Layers" in the architecture page). Two
needs point up at run time: the settings ask the plugin registry which keys, sections and names
the installed plugins declare; and a task submitted inside a task run on a worker needs a
driver for its child runs. The lower module calls `plugin_registry` or `nested_driver` here,
which the package's ``__init__`` (the top of the layers, run before any module of the package)
binds to a function that imports the higher module at its first call.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

# Set in the flow's process while a flow body runs: the flow run's driver.
_flow_run_driver: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "taskloom_flow_run", default=None
)
# Set wherever a task run executes (a thread, a process, a Dask or Ray worker): its recorder.
_task_run_recorder: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "taskloom_task_run", default=None
)


def _unbound() -> Any:
    raise RuntimeError("taskloom's __init__ binds this when the package is imported.")


#: The plugin registry (`taskloom.plugins`), for the settings (`taskloom.config`).
plugin_registry: Callable[[], Any] = _unbound
#: The driver of the runs submitted inside the task run executing here (`taskloom._nested`),
#: for `Task.submit` and `Task.map`.
nested_driver: Callable[[], Any] = _unbound
