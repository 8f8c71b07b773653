"""The names of the span attributes taskloom-otel sets, and turning states into them."""

from __future__ import annotations

from typing import Any

from taskloom.states import State

TRACER_NAME = "taskloom"

RUN_TYPE = "taskloom.run.type"
FLOW_RUN_ID = "taskloom.flow_run.id"
FLOW_RUN_NAME = "taskloom.flow_run.name"
FLOW_NAME = "taskloom.flow.name"
PARENT_FLOW_RUN_ID = "taskloom.flow_run.parent_flow_run.id"
PARENT_TASK_RUN_ID = "taskloom.flow_run.parent_task_run.id"
TASK_RUNNER = "taskloom.task_runner"
TASK_RUN_ID = "taskloom.task_run.id"
TASK_RUN_NAME = "taskloom.task_run.name"
TASK_NAME = "taskloom.task.name"
TASK_KEY = "taskloom.task.key"
TASK_RUN_TAGS = "taskloom.task_run.tags"
RETRY_COUNT = "taskloom.task_run.retry_count"
STATE_TYPE = "taskloom.state.type"
STATE_NAME = "taskloom.state.name"
STATE_MESSAGE = "taskloom.state.message"
WORKER = "taskloom.worker"


def state_attributes(state: State) -> dict[str, Any]:
    attributes: dict[str, Any] = {STATE_TYPE: state.type.value, STATE_NAME: state.name}
    if state.message:
        attributes[STATE_MESSAGE] = state.message
    if state.worker:
        attributes[WORKER] = state.worker
    return attributes
