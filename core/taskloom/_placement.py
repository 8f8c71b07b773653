"""Results and hosts: one warning when results stay on a host the workers may not be on.

A runner whose workers may sit on other hosts says so (`TaskRunner.remote_workers`); a
result storage that only its own host sees says so too (``host_local``: memory, or files
under a relative path). A task run that persists or caches its result through such a storage
on such a runner gets one warning per process, naming the fix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .plugins import warn_once

if TYPE_CHECKING:
    from ._calls import RunDefaults, TaskRunCall
    from .runners import TaskRunner

__all__ = ["ResultPlacement", "resolved_options", "resolved_path"]

logger = logging.getLogger("taskloom.flow_runs")


def resolved_path(path: str | None) -> str | None:
    """A local ``results.path`` made absolute here, in the flow's process, before calls ship.

    Resolved on a worker, a relative path would name the worker's own working directory.
    URLs (``s3://...``) are left as they are.
    """
    if path is None or "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))


def resolved_options(
    options: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]] | None:
    """``[storages.NAME]`` options with a local ``path`` made absolute, as `resolved_path`."""
    if options is None:
        return None
    return {
        name: {k: resolved_path(v) if k == "path" and isinstance(v, str) else v for k, v in own.items()}
        for name, own in options.items()
    }


class ResultPlacement:
    """Checks, for a runner with remote workers, where task runs keep their results."""

    def __init__(
        self,
        runner: TaskRunner,
        defaults: RunDefaults,
        path_given: str | None,
        options_given: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.runner = runner
        self.defaults = defaults
        # As the user gave them: an absolute path may be on a shared filesystem (their call).
        self.path_given = path_given
        self.options_given = options_given
        self.checked: set[Any] = set()

    def check(self, call: TaskRunCall) -> None:
        from . import results
        from ._execution import wants_results

        spec = call.task.result_storage or self.defaults.result_storage
        key = spec if isinstance(spec, str) else id(spec)
        if key in self.checked or not wants_results(call):
            return
        self.checked.add(key)
        try:
            storage = results.resolve_storage(spec, self.path_given, self.options_given)
        except Exception:  # an unknown storage: the run itself fails with that sentence
            return
        if not getattr(storage, "host_local", False):
            return
        warn_once(
            logger,
            "Task %r keeps its results in %r, which only this host sees, but runner %r may run it "
            "on other hosts: set results.storage to a storage that every host reaches (one that "
            "writes to s3:// or gs://; `taskloom plugins` lists the installed storages), or set "
            "results.path to an absolute path on a shared filesystem that every worker mounts at "
            "the same place.",
            call.task.name,
            storage,
            getattr(self.runner, "name", self.runner),
            key="results on a remote runner's host",
        )
