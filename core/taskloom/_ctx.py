"""The context variables of the current runs; kept apart so that `import taskloom` stays light."""

from __future__ import annotations

import contextvars
from typing import Any

# Set in the flow's process while a flow body runs: the flow run's driver.
_flow_run_driver: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "taskloom_flow_run", default=None
)
# Set wherever a task run executes (a thread, a process, a Dask or Ray worker): its recorder.
_task_run_recorder: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "taskloom_task_run", default=None
)
