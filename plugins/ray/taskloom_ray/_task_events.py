"""Ray's own record of where each task went: the task events the head keeps.

`ClusterWatch` reads it only after a node died, for the runs in flight then (see `_watch`).
"""

from __future__ import annotations

import logging

__all__ = ["fits", "handed_to"]

logger = logging.getLogger("taskloom.task_runner.ray")


def fits(needs: dict[str, float], free: dict[str, float]) -> bool:
    """Whether a task that needs ``needs`` fits in the cluster's ``free`` resources."""
    return bool(free) and all(free.get(name, 0.0) >= amount for name, amount in needs.items())


def handed_to(task_ids: set[str], job: str) -> dict[str, tuple[str, dict[str, float]]] | None:
    """The node Ray handed each of these tasks (hex ids) to, by the task events the head keeps,
    and the resources the task needs: ``""`` for a task Ray knows but has not placed; a task
    Ray's events do not know is absent.

    Read only after a node died, for the runs in flight then. None when the events cannot be
    read (a Ray without them): those runs are left to Ray, as before.
    """
    try:
        from ray._private.state import state

        events = state._get_all_task_events()
    except Exception as exc:  # an older or newer Ray without this record: leave them to Ray
        logger.debug("Reading Ray's task events: %r", exc)
        return None
    found: dict[str, tuple[str, dict[str, float]]] = {}
    for event in events:
        task_id = event.task_id.hex()
        if task_id in task_ids and event.job_id.hex() == job:
            update = event.state_updates
            node = update.node_id.hex() if update.HasField("node_id") else ""
            before = found.get(task_id, ("", {}))
            needs = dict(event.task_info.required_resources) or before[1]
            found[task_id] = (node or before[0], needs)
    return found
